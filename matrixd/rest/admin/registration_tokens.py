"""``/_synapse/admin/v1/registration_tokens``: list, create, read, update, delete (admins only)."""

from __future__ import annotations

from matrixd.handlers.accounts.registration_tokens import RegistrationTokenAdmin
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet
from matrixd.http.servlet import parse_boolean, parse_json_object_from_request
from matrixd.rest.admin import AdminAuth, admin_patterns
from matrixd.types import JsonDict


class RegistrationTokensServlet(RestServlet):
    PATTERNS = admin_patterns("/registration_tokens")

    def __init__(self, auth: AdminAuth, handler: RegistrationTokenAdmin) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        valid = parse_boolean(request, "valid")
        return 200, {"registration_tokens": [t.to_json() for t in await self._handler.list(valid)]}


class NewRegistrationTokenServlet(RestServlet):
    PATTERNS = admin_patterns("/registration_tokens/new")

    def __init__(self, auth: AdminAuth, handler: RegistrationTokenAdmin) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        return 200, (await self._handler.create(body)).to_json()


class RegistrationTokenServlet(RestServlet):
    PATTERNS = admin_patterns("/registration_tokens/(?P<token>[^/]*)")

    def __init__(self, auth: AdminAuth, handler: RegistrationTokenAdmin) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest, token: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, (await self._handler.get(token)).to_json()

    async def on_PUT(self, request: MatrixRequest, token: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        body = parse_json_object_from_request(request)
        return 200, (await self._handler.update(token, body)).to_json()

    async def on_DELETE(self, request: MatrixRequest, token: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        await self._handler.delete(token)
        return 200, {}
