"""``POST /rooms/{roomId}/read_markers``: the fully read marker and read receipts in one call."""

from __future__ import annotations

from typing import Any

from matrixd.api.errors import BadJsonError
from matrixd.handlers.account_data import AccountDataHandler
from matrixd.handlers.receipts import FULLY_READ, READ, READ_PRIVATE, ReceiptsHandler
from matrixd.types import JsonDict, Requester


class ReadMarkersHandler:
    def __init__(self, *, receipts: ReceiptsHandler, account_data: AccountDataHandler) -> None:
        self._receipts = receipts
        self._account_data = account_data

    async def set_read_markers(self, requester: Requester, room_id: str, body: JsonDict) -> None:
        """Every given marker is checked before any is written, so bad input changes nothing."""
        markers: dict[str, str] = {}
        for key in (FULLY_READ, READ, READ_PRIVATE):
            value: Any = body.get(key)
            if value is None:
                continue
            if not isinstance(value, str) or not value:
                raise BadJsonError(f"{key} must be an event ID")
            markers[key] = value
        user_id = requester.user_id
        events = {
            key: await self._receipts.check_event_in_joined_room(user_id, room_id, event_id)
            for key, event_id in markers.items()
        }
        if FULLY_READ in events:
            await self._account_data.set_fully_read(user_id, room_id, events[FULLY_READ].event_id)
        for receipt_type in (READ, READ_PRIVATE):
            if receipt_type in events:
                await self._receipts.store_receipt(room_id, receipt_type, user_id, events[receipt_type], None)
