"""Inbound typing, receipts and presence applied through the sync area's handlers."""

from __future__ import annotations

import logging
from typing import Sequence

from matrixd.handlers.presence import PresenceHandler
from matrixd.handlers.receipts import RECEIPT_TYPES, ReceiptsHandler
from matrixd.handlers.typing import MAX_TYPING_TIMEOUT_MS, TypingHandler
from matrixd.storage.events import EventStore
from matrixd.storage.receipts import PRIVATE_RECEIPT_TYPES
from matrixd.types import JsonDict

logger = logging.getLogger(__name__)


class SyncAreaSinks:
    """``RemoteTypingSink``, ``RemoteReceiptSink`` and ``RemotePresenceSink`` over the sync handlers."""

    def __init__(self, *, typing: TypingHandler, receipts: ReceiptsHandler, presence: PresenceHandler,
                 events: EventStore) -> None:
        self._typing = typing
        self._receipts = receipts
        self._presence = presence
        self._events = events

    async def on_remote_typing(self, room_id: str, user_id: str, typing: bool) -> None:
        if typing:
            # The EDU carries no timeout: the remote re-sends while its user types.
            self._typing.start_typing(room_id, user_id, MAX_TYPING_TIMEOUT_MS)
        else:
            self._typing.stop_typing(room_id, user_id)

    async def on_remote_receipt(self, room_id: str, receipt_type: str, user_id: str, event_ids: Sequence[str],
                                data: JsonDict) -> None:
        if receipt_type not in RECEIPT_TYPES or receipt_type in PRIVATE_RECEIPT_TYPES:
            return
        thread_id = data.get("thread_id")
        for event_id in event_ids:
            event = await self._events.get_event(event_id)
            if event is None or event.room_id != room_id:
                logger.debug("receipt of %s for unknown event %s dropped", user_id, event_id)
                continue
            await self._receipts.store_receipt(room_id, receipt_type, user_id, event,
                                               thread_id if isinstance(thread_id, str) and thread_id else None)

    async def on_remote_presence(self, user_id: str, state: JsonDict) -> None:
        await self._presence.set_remote_presence(user_id, state)
