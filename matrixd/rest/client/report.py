"""Reporting content: ``/rooms/{roomId}/report/{eventId}``, ``/rooms/{roomId}/report``, ``/users/{userId}/report``."""

from __future__ import annotations

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.rooms.report import ReportHandler, check_reason
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import JsonDict


class ReportEventServlet(RestServlet):
    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]*)/report/(?P<event_id>[^/]*)")

    def __init__(self, auth: Auth, handler: ReportHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest, room_id: str, event_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        reason = check_reason(body.get("reason"), required=False)
        score = body.get("score")
        if score is not None and (type(score) is not int or not -100 <= score <= 0):
            raise MatrixError(400, "score must be an integer between -100 and 0", Codes.INVALID_PARAM)
        await self._handler.report_event(requester, room_id, event_id, reason, score)
        return 200, {}


class ReportRoomServlet(RestServlet):
    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]*)/report")

    def __init__(self, auth: Auth, handler: ReportHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request)
        reason = check_reason(body.get("reason"), required=True)
        assert reason is not None
        await self._handler.report_room(requester, room_id, reason)
        return 200, {}


class ReportUserServlet(RestServlet):
    PATTERNS = client_patterns("/users/(?P<user_id>[^/]*)/report")

    def __init__(self, auth: Auth, handler: ReportHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request)
        reason = check_reason(body.get("reason"), required=True)
        assert reason is not None
        await self._handler.report_user(requester, user_id, reason)
        return 200, {}
