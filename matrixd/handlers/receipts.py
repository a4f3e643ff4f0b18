"""Read receipts: ``POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`` and their stream.

``m.read`` is public, ``m.read.private`` is only ever shown to its sender, and
``m.fully_read`` through this endpoint moves the fully read marker (room
account data) instead of writing a receipt.  A receipt is "up to" an event,
so one that would move a receipt backwards in the room's stream is ignored.
Threaded receipts (``thread_id``: ``main`` or a thread root) are stored apart
from unthreaded ones.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from matrixd.api.errors import AuthError, InvalidParamError, NotFoundError
from matrixd.events.event import Event
from matrixd.handlers.account_data import AccountDataHandler
from matrixd.handlers.sync.announcer import StreamAnnouncer
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.receipts import ReceiptStore
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName
from matrixd.types import Requester
from matrixd.util.clock import Clock

READ = "m.read"
READ_PRIVATE = "m.read.private"
FULLY_READ = "m.fully_read"
RECEIPT_TYPES = frozenset({READ, READ_PRIVATE})
MAIN_THREAD = "main"
#: Relations followed to find an event's thread (the spec recommends at most 3).
MAX_THREAD_HOPS = 3


class ReceiptsHandler:
    def __init__(
        self,
        *,
        clock: Clock,
        store: ReceiptStore,
        events: EventStore,
        current_state: CurrentStateStore,
        notifier: Notifier,
        account_data: AccountDataHandler,
    ) -> None:
        self._clock = clock
        self._store = store
        self._events = events
        self._current_state = current_state
        self._announcer = StreamAnnouncer(notifier, StreamName.RECEIPTS, store.get_current_token)
        self._account_data = account_data

    def set_publisher(self, notify: Callable[[], None]) -> None:
        """Announce writes through the replication publisher (``notify`` is its notify for this stream)."""
        self._announcer.publish_through(notify)

    async def post_receipt(
        self, requester: Requester, room_id: str, receipt_type: str, event_id: str, thread_id: Any = None
    ) -> None:
        """Validate and store a receipt (or, for ``m.fully_read``, move the read marker)."""
        if receipt_type not in RECEIPT_TYPES and receipt_type != FULLY_READ:
            raise InvalidParamError("Receipt type must be one of m.read, m.read.private, m.fully_read")
        if thread_id is not None and (not isinstance(thread_id, str) or not thread_id):
            raise InvalidParamError("thread_id field must be a non-empty string")
        if receipt_type == FULLY_READ and thread_id is not None:
            raise InvalidParamError("thread_id is not allowed for m.fully_read")
        user_id = requester.user_id
        event = await self.check_event_in_joined_room(user_id, room_id, event_id)
        if receipt_type == FULLY_READ:
            await self._account_data.set_fully_read(user_id, room_id, event_id)
            return
        if thread_id is not None:
            await self._check_thread(event, thread_id)
        await self.store_receipt(room_id, receipt_type, user_id, event, thread_id)

    async def check_event_in_joined_room(self, user_id: str, room_id: str, event_id: str) -> Event:
        """The event a receipt or marker points at: it must be in a room the user is joined to."""
        membership = await self._current_state.get_membership(room_id, user_id)
        if membership is None or membership.membership != "join":
            raise AuthError(403, "You are not joined to this room")
        event = await self._events.get_event(event_id)
        if event is None or event.room_id != room_id or event.internal_metadata.outlier:
            raise NotFoundError("Event not found in this room")
        return event

    async def store_receipt(
        self, room_id: str, receipt_type: str, user_id: str, event: Event, thread_id: Optional[str]
    ) -> None:
        data: dict[str, Any] = {"ts": self._clock.time_msec()}
        if thread_id is not None:
            data["thread_id"] = thread_id
        try:
            stream_id = await self._store.insert_receipt(
                room_id, receipt_type, user_id, thread_id, event.event_id,
                event.internal_metadata.stream_ordering or 0, data,
            )
        except BaseException:
            self._announcer.flush()
            raise
        if stream_id is None:
            self._announcer.flush()  # the id finished without a row
        else:
            self._announcer.announce(stream_id, [room_id])

    async def _check_thread(self, event: Event, thread_id: str) -> None:
        """400 if the event is plainly not in the thread the receipt names."""
        thread = await self._thread_of(event)
        if thread_id == MAIN_THREAD:
            if thread is not None:
                raise InvalidParamError(f"{event.event_id} is in thread {thread}, not the main timeline")
        elif thread != thread_id and event.event_id != thread_id:
            raise InvalidParamError(f"{event.event_id} is not in thread {thread_id}")

    async def _thread_of(self, event: Event) -> Optional[str]:
        """The thread root the event belongs to (None: the main timeline), following up to 3 relations."""
        current: Optional[Event] = event
        for _ in range(MAX_THREAD_HOPS):
            if current is None:
                return None
            relates = current.content.get("m.relates_to")
            if not isinstance(relates, dict) or not isinstance(relates.get("event_id"), str):
                return None
            if relates.get("rel_type") == "m.thread":
                return str(relates["event_id"])
            current = await self._events.get_event(relates["event_id"])
        return None
