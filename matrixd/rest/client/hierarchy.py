"""``GET /_matrix/client/v1/rooms/{roomId}/hierarchy``."""

from __future__ import annotations

from matrixd.handlers.rooms.hierarchy import SpaceHierarchyHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_boolean, parse_integer, parse_string
from matrixd.types import JsonDict


class SpaceHierarchyServlet(RestServlet):
    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]*)/hierarchy", releases=(), v1=True)

    def __init__(self, auth: Auth, handler: SpaceHierarchyHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        return 200, await self._handler.get_hierarchy(
            requester, room_id,
            suggested_only=parse_boolean(request, "suggested_only", default=False),
            max_depth=parse_integer(request, "max_depth", min_value=None),
            limit=parse_integer(request, "limit", min_value=None),
            from_token=parse_string(request, "from"),
        )
