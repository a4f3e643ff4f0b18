"""``POST /rooms/{roomId}/upgrade``."""

from __future__ import annotations

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.rooms.upgrade import RoomUpgradeHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import JsonDict


class RoomUpgradeServlet(RestServlet):
    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]*)/upgrade")

    def __init__(self, auth: Auth, handler: RoomUpgradeHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request)
        if "new_version" not in body:
            raise MatrixError(400, "Missing new_version", Codes.MISSING_PARAM)
        creators = body.get("additional_creators")
        if creators is not None and not isinstance(creators, list):
            raise MatrixError(400, "additional_creators must be a list of user ids", Codes.BAD_JSON)
        new_room_id = await self._handler.upgrade_room(requester, room_id, body["new_version"], creators)
        return 200, {"replacement_room": new_room_id}
