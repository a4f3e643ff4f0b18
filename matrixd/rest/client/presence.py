"""``PUT``/``GET /presence/{userId}/status``."""

from __future__ import annotations

from matrixd.api.errors import BadJsonError
from matrixd.handlers.presence import PresenceHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import JsonDict


class PresenceStatusServlet(RestServlet):
    PATTERNS = client_patterns("/presence/(?P<user_id>[^/]*)/status$")

    def __init__(self, auth: Auth, presence: PresenceHandler) -> None:
        self._auth = auth
        self._presence = presence

    async def on_GET(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        return 200, await self._presence.get_presence_for_client(requester, user_id)

    async def on_PUT(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        body = parse_json_object_from_request(request)
        state = body.get("presence")
        if not isinstance(state, str):
            raise BadJsonError("presence must be a string")
        status_msg = body.get("status_msg")
        if status_msg is not None and not isinstance(status_msg, str):
            raise BadJsonError("status_msg must be a string")
        await self._presence.set_presence(
            requester, user_id, state, status_msg, has_status_msg="status_msg" in body
        )
        return 200, {}
