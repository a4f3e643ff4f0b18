"""``/profile/{userId}`` and ``/profile/{userId}/{keyName}`` (GET without auth; PUT/DELETE as the user)."""

from __future__ import annotations

from matrixd.handlers.accounts.profile import ProfileHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import JsonDict


class ProfileServlet(RestServlet):
    PATTERNS = client_patterns("/profile/(?P<user_id>[^/]*)")

    def __init__(self, handler: ProfileHandler) -> None:
        self._handler = handler

    async def on_GET(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        return 200, await self._handler.get_profile(user_id)


class ProfileFieldServlet(RestServlet):
    PATTERNS = client_patterns("/profile/(?P<user_id>[^/]*)/(?P<key>[^/]*)")

    def __init__(self, auth: Auth, handler: ProfileHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest, user_id: str, key: str) -> tuple[int, JsonDict]:
        return 200, await self._handler.get_field(user_id, key)

    async def on_PUT(self, request: MatrixRequest, user_id: str, key: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        body = parse_json_object_from_request(request)
        await self._handler.set_field(requester, user_id, key, body)
        return 200, {}

    async def on_DELETE(self, request: MatrixRequest, user_id: str, key: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        await self._handler.delete_field(requester, user_id, key)
        return 200, {}
