"""``GET/POST /_synapse/admin/v1/register``: shared-secret registration (nonce + HMAC)."""

from __future__ import annotations

from matrixd.handlers.accounts.shared_secret import SharedSecretRegistration
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.rest.admin import admin_patterns
from matrixd.types import JsonDict


class SharedSecretRegisterServlet(RestServlet):
    PATTERNS = admin_patterns("/register")

    def __init__(self, handler: SharedSecretRegistration) -> None:
        self._handler = handler

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        return 200, {"nonce": self._handler.new_nonce()}

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        body = parse_json_object_from_request(request)
        return 200, await self._handler.register(body)
