"""Account data: ``/user/{userId}/account_data/{type}`` and ``/user/{userId}/rooms/{roomId}/account_data/{type}``."""

from __future__ import annotations

from matrixd.handlers.account_data import AccountDataHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import JsonDict


class AccountDataServlet(RestServlet):
    PATTERNS = client_patterns("/user/(?P<user_id>[^/]*)/account_data/(?P<data_type>[^/]*)$")

    def __init__(self, auth: Auth, account_data: AccountDataHandler) -> None:
        self._auth = auth
        self._account_data = account_data

    async def on_PUT(self, request: MatrixRequest, user_id: str, data_type: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        content = parse_json_object_from_request(request)
        await self._account_data.set_global(requester, user_id, data_type, content)
        return 200, {}

    async def on_GET(self, request: MatrixRequest, user_id: str, data_type: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        return 200, await self._account_data.get_global(requester, user_id, data_type)


class RoomAccountDataServlet(RestServlet):
    PATTERNS = client_patterns(
        "/user/(?P<user_id>[^/]*)/rooms/(?P<room_id>[^/]*)/account_data/(?P<data_type>[^/]*)$"
    )

    def __init__(self, auth: Auth, account_data: AccountDataHandler) -> None:
        self._auth = auth
        self._account_data = account_data

    async def on_PUT(
        self, request: MatrixRequest, user_id: str, room_id: str, data_type: str
    ) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        content = parse_json_object_from_request(request)
        await self._account_data.set_room(requester, user_id, room_id, data_type, content)
        return 200, {}

    async def on_GET(
        self, request: MatrixRequest, user_id: str, room_id: str, data_type: str
    ) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        return 200, await self._account_data.get_room(requester, user_id, room_id, data_type)
