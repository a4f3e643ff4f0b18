"""Room tags: ``/user/{userId}/rooms/{roomId}/tags`` and ``.../tags/{tag}``."""

from __future__ import annotations

from matrixd.handlers.account_data import AccountDataHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import JsonDict


class TagListServlet(RestServlet):
    PATTERNS = client_patterns("/user/(?P<user_id>[^/]*)/rooms/(?P<room_id>[^/]*)/tags$")

    def __init__(self, auth: Auth, account_data: AccountDataHandler) -> None:
        self._auth = auth
        self._account_data = account_data

    async def on_GET(self, request: MatrixRequest, user_id: str, room_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        return 200, {"tags": await self._account_data.get_tags(requester, user_id, room_id)}


class TagServlet(RestServlet):
    PATTERNS = client_patterns("/user/(?P<user_id>[^/]*)/rooms/(?P<room_id>[^/]*)/tags/(?P<tag>[^/]*)$")

    def __init__(self, auth: Auth, account_data: AccountDataHandler) -> None:
        self._auth = auth
        self._account_data = account_data

    async def on_PUT(self, request: MatrixRequest, user_id: str, room_id: str, tag: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        content = parse_json_object_from_request(request)
        await self._account_data.add_tag(requester, user_id, room_id, tag, content)
        return 200, {}

    async def on_DELETE(self, request: MatrixRequest, user_id: str, room_id: str, tag: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        await self._account_data.remove_tag(requester, user_id, room_id, tag)
        return 200, {}
