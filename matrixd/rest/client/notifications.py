"""``GET /notifications``."""

from __future__ import annotations

from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_integer, parse_string
from matrixd.push.notifications import NotificationsHandler
from matrixd.types import JsonDict


class NotificationsServlet(RestServlet):
    PATTERNS = client_patterns("/notifications$")

    def __init__(self, auth: Auth, handler: NotificationsHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        return 200, await self._handler.get_notifications(
            requester, parse_string(request, "from"), parse_integer(request, "limit"), parse_string(request, "only")
        )
