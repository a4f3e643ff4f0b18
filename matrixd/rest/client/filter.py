"""``POST /user/{userId}/filter`` and ``GET /user/{userId}/filter/{filterId}``."""

from __future__ import annotations

from matrixd.handlers.sync.filters import FilterHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import JsonDict


class CreateFilterServlet(RestServlet):
    PATTERNS = client_patterns("/user/(?P<user_id>[^/]*)/filter$")

    def __init__(self, auth: Auth, filters: FilterHandler) -> None:
        self._auth = auth
        self._filters = filters

    async def on_POST(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        body = parse_json_object_from_request(request)
        filter_id = await self._filters.create_filter(requester, user_id, body)
        return 200, {"filter_id": filter_id}


class GetFilterServlet(RestServlet):
    PATTERNS = client_patterns("/user/(?P<user_id>[^/]*)/filter/(?P<filter_id>[^/]*)$")

    def __init__(self, auth: Auth, filters: FilterHandler) -> None:
        self._auth = auth
        self._filters = filters

    async def on_GET(self, request: MatrixRequest, user_id: str, filter_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        return 200, await self._filters.get_filter_definition(requester, user_id, filter_id)
