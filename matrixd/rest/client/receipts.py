"""``POST /rooms/{roomId}/receipt/{receiptType}/{eventId}``."""

from __future__ import annotations

from matrixd.handlers.receipts import ReceiptsHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import JsonDict


class ReceiptServlet(RestServlet):
    PATTERNS = client_patterns(
        "/rooms/(?P<room_id>[^/]*)/receipt/(?P<receipt_type>[^/]*)/(?P<event_id>[^/]*)$"
    )

    def __init__(self, auth: Auth, receipts: ReceiptsHandler) -> None:
        self._auth = auth
        self._receipts = receipts

    async def on_POST(
        self, request: MatrixRequest, room_id: str, receipt_type: str, event_id: str
    ) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        # Older clients send no body at all; an empty body means "unthreaded".
        body = parse_json_object_from_request(request, allow_empty_body=True)
        await self._receipts.post_receipt(requester, room_id, receipt_type, event_id, body.get("thread_id"))
        return 200, {}
