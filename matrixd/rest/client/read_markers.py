"""``POST /rooms/{roomId}/read_markers``."""

from __future__ import annotations

from matrixd.handlers.read_markers import ReadMarkersHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import JsonDict


class ReadMarkersServlet(RestServlet):
    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]*)/read_markers$")

    def __init__(self, auth: Auth, read_markers: ReadMarkersHandler) -> None:
        self._auth = auth
        self._read_markers = read_markers

    async def on_POST(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request)
        await self._read_markers.set_read_markers(requester, room_id, body)
        return 200, {}
