"""``PUT /rooms/{roomId}/typing/{userId}``."""

from __future__ import annotations

from typing import Optional

from matrixd.api.errors import BadJsonError
from matrixd.handlers.typing import TypingHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import JsonDict


class TypingServlet(RestServlet):
    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]*)/typing/(?P<user_id>[^/]*)$")

    def __init__(self, auth: Auth, typing: TypingHandler) -> None:
        self._auth = auth
        self._typing = typing

    async def on_PUT(self, request: MatrixRequest, room_id: str, user_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request)
        typing = body.get("typing")
        if not isinstance(typing, bool):
            raise BadJsonError("typing must be a boolean")
        timeout = body.get("timeout")
        timeout_ms: Optional[int] = None
        if typing and timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, int):
                raise BadJsonError("timeout must be an integer number of milliseconds")
            timeout_ms = timeout
        await self._typing.set_typing(requester, room_id, user_id, typing, timeout_ms)
        return 200, {}
