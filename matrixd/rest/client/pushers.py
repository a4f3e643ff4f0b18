"""``GET /pushers`` and ``POST /pushers/set``."""

from __future__ import annotations

from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.push.pushers import PushersHandler
from matrixd.types import JsonDict


class PushersServlet(RestServlet):
    PATTERNS = client_patterns("/pushers$")

    def __init__(self, auth: Auth, pushers: PushersHandler) -> None:
        self._auth = auth
        self._pushers = pushers

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        return 200, {"pushers": await self._pushers.get_pushers(requester.user_id)}


class SetPusherServlet(RestServlet):
    PATTERNS = client_patterns("/pushers/set$")

    def __init__(self, auth: Auth, pushers: PushersHandler) -> None:
        self._auth = auth
        self._pushers = pushers

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        await self._pushers.set_pusher(requester, parse_json_object_from_request(request))
        return 200, {}
