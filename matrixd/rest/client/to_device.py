"""``PUT /sendToDevice/{eventType}/{txnId}``."""

from __future__ import annotations

from matrixd.handlers.e2e.to_device import ToDeviceHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import JsonDict


class SendToDeviceServlet(RestServlet):
    """Guests allowed (guest access module)."""

    PATTERNS = client_patterns("/sendToDevice/(?P<event_type>[^/]*)/(?P<txn_id>[^/]*)")

    def __init__(self, auth: Auth, handler: ToDeviceHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_PUT(self, request: MatrixRequest, event_type: str, txn_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        body = parse_json_object_from_request(request)
        await self._handler.send_to_device(requester, event_type, txn_id, body)
        return 200, {}
