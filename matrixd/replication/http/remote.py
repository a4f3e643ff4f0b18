"""Remote implementations of the write handlers, for workers (chosen once, at start-up).

Each class here stands in for a master handler in a worker's wiring and has
the same methods, so the servlets and the sync handler run unchanged: reads
are the inherited ones (served from the worker's own database connection
and replicas), and every method that writes is overridden to call the
master through :class:`RemoteWriter` (read-your-writes included).  No
handler anywhere asks which process it runs in.

:class:`RemoteEventSendHandler` and :class:`RemoteReadMarkersHandler` do not
initialise their base classes at all: nothing of the local implementation is
needed, and any method not overridden fails loudly instead of writing.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Mapping, Optional

from matrixd.handlers.account_data import AccountDataHandler
from matrixd.handlers.e2e.device_lists import DeviceListUpdater
from matrixd.handlers.e2e.to_device import ToDeviceHandler
from matrixd.handlers.presence import OFFLINE, ONLINE, UNAVAILABLE, PresenceHandler
from matrixd.handlers.read_markers import ReadMarkersHandler
from matrixd.handlers.receipts import ReceiptsHandler
from matrixd.handlers.rooms.send import EventSendHandler
from matrixd.handlers.typing import TypingHandler
from matrixd.events.event import Event
from matrixd.federation.inbound.transactions import TransactionHandler, transaction_contents
from matrixd.replication.http import writes
from matrixd.replication.http.client import RemoteWriter
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName
from matrixd.types import JsonDict, Requester


class RemoteEventSendHandler(EventSendHandler):
    """Sends events through the master (``send_event``); idempotent by the client's txn id there."""

    def __init__(self, writer: RemoteWriter) -> None:  # noqa: D107 - base deliberately not initialised
        self._writer = writer

    async def send_event(
        self,
        requester: Requester,
        room_id: str,
        event_type: str,
        content: Mapping[str, Any],
        *,
        state_key: Optional[str] = None,
        txn_id: Optional[str] = None,
        redacts: Optional[str] = None,
        origin_server_ts: Optional[int] = None,
    ) -> str:
        result = await self._writer.write(writes.SEND_EVENT, {
            "requester": writes.requester_to_json(requester), "room_id": room_id, "type": event_type,
            "content": dict(content), "state_key": state_key, "txn_id": txn_id, "redacts": redacts,
            # An application service's massaged timestamp (?ts=), if any.
            "origin_server_ts": origin_server_ts,
        })
        event_id = result.get("event_id")
        if not isinstance(event_id, str):
            raise RuntimeError("the master's send_event answer has no event_id")
        return event_id


class RemoteTypingHandler(TypingHandler):
    """A replica of the typing lists (fed by the typing stream); typing changes go to the master."""

    def __init__(self, writer: RemoteWriter, **kwargs: Any) -> None:
        super().__init__(initial_position=0, **kwargs)
        self._writer = writer

    async def set_typing(
        self, requester: Requester, room_id: str, user_id: str, typing: bool, timeout_ms: Optional[int]
    ) -> None:
        await self._writer.write(writes.TYPING, {
            "requester": writes.requester_to_json(requester), "room_id": room_id, "user_id": user_id,
            "typing": typing, "timeout_ms": timeout_ms,
        })

    def start_typing(self, room_id: str, user_id: str, timeout_ms: int) -> None:
        raise RuntimeError("typing lists are kept by the master; a worker only replicates them")

    def stop_typing(self, room_id: str, user_id: str) -> None:
        raise RuntimeError("typing lists are kept by the master; a worker only replicates them")


class RemoteReceiptsHandler(ReceiptsHandler):
    """Receipts (and ``m.fully_read`` through the receipt API) are written by the master."""

    def __init__(self, writer: RemoteWriter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._writer = writer

    async def post_receipt(
        self, requester: Requester, room_id: str, receipt_type: str, event_id: str, thread_id: Any = None
    ) -> None:
        await self._writer.write(writes.RECEIPT, {
            "requester": writes.requester_to_json(requester), "room_id": room_id, "receipt_type": receipt_type,
            "event_id": event_id, "thread_id": thread_id,
        })

    async def store_receipt(
        self, room_id: str, receipt_type: str, user_id: str, event: Event, thread_id: Optional[str]
    ) -> None:
        raise RuntimeError("receipts are stored by the master (post_receipt forwards the whole request)")


class RemoteReadMarkersHandler(ReadMarkersHandler):
    """``/read_markers`` runs on the master as a whole (checks first, then every marker)."""

    def __init__(self, writer: RemoteWriter) -> None:  # noqa: D107 - base deliberately not initialised
        self._writer = writer

    async def set_read_markers(self, requester: Requester, room_id: str, body: JsonDict) -> None:
        await self._writer.write(writes.READ_MARKERS, {
            "requester": writes.requester_to_json(requester), "room_id": room_id, "body": body,
        })


class RemoteAccountDataHandler(AccountDataHandler):
    """Reads account data from the database; writes go to the master."""

    def __init__(self, writer: RemoteWriter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._writer = writer

    async def _call(self, requester: Requester, op: str, user_id: str, **args: Any) -> None:
        await self._writer.write(writes.ACCOUNT_DATA, {
            "requester": writes.requester_to_json(requester), "op": op, "user_id": user_id, **args,
        })

    async def set_global(self, requester: Requester, user_id: str, data_type: str, content: JsonDict) -> None:
        await self._call(requester, "set_global", user_id, data_type=data_type, content=content)

    async def set_room(
        self, requester: Requester, user_id: str, room_id: str, data_type: str, content: JsonDict
    ) -> None:
        await self._call(requester, "set_room", user_id, room_id=room_id, data_type=data_type, content=content)

    async def add_tag(self, requester: Requester, user_id: str, room_id: str, tag: str, content: JsonDict) -> None:
        await self._call(requester, "add_tag", user_id, room_id=room_id, tag=tag, content=content)

    async def remove_tag(self, requester: Requester, user_id: str, room_id: str, tag: str) -> None:
        await self._call(requester, "remove_tag", user_id, room_id=room_id, tag=tag)

    async def set_fully_read(self, user_id: str, room_id: str, event_id: str) -> None:
        raise RuntimeError("read markers are written by the master (the read_markers/receipt endpoints)")


class RemotePresenceHandler(PresenceHandler):
    """Presence as a worker sees it: states read from the database, changes made by the master.

    A ``/sync`` here tells the master the user is syncing (``USER_SYNC`` on the
    replication connection, so the master does not time them out) and, when
    the sync changes the user's state (coming online, ``set_presence=
    unavailable``), asks the master to make that change first.
    """

    def __init__(self, writer: RemoteWriter, set_user_syncing: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._writer = writer
        self._set_user_syncing = set_user_syncing
        self._local_syncs: dict[str, int] = {}

    async def start(self) -> None:
        """Nothing to load or time out here: the master does both."""

    async def set_presence(
        self, requester: Requester, user_id: str, state: str, status_msg: Optional[str], *, has_status_msg: bool
    ) -> None:
        await self._writer.write(writes.PRESENCE, {
            "requester": writes.requester_to_json(requester), "user_id": user_id, "presence": state,
            "status_msg": status_msg, "has_status_msg": has_status_msg,
        })

    async def bump_activity(self, user_id: str) -> None:
        raise RuntimeError("presence activity is tracked by the master")

    def on_event_persisted(self, sender: str) -> None:
        raise RuntimeError("events are persisted (and presence bumped) by the master")

    async def check_timeouts(self) -> None:
        raise RuntimeError("presence timeouts run on the master")

    @asynccontextmanager
    async def user_syncing(self, user_id: str, set_presence: str) -> AsyncIterator[None]:
        if not self.enabled or set_presence == OFFLINE:
            yield
            return
        prev = await self.get_state(user_id)
        if (set_presence == UNAVAILABLE and prev.state != UNAVAILABLE) or (
            set_presence == ONLINE and prev.state == OFFLINE
        ):
            await self._writer.write(writes.PRESENCE_SYNC, {"user_id": user_id, "set_presence": set_presence})
        self._local_syncs[user_id] = self._local_syncs.get(user_id, 0) + 1
        if self._local_syncs[user_id] == 1:
            self._set_user_syncing(user_id, True)
        try:
            yield
        finally:
            left = self._local_syncs.get(user_id, 1) - 1
            if left > 0:
                self._local_syncs[user_id] = left
            else:
                self._local_syncs.pop(user_id, None)
                self._set_user_syncing(user_id, False)


class RemoteToDeviceHandler(ToDeviceHandler):
    """To-device reads from the database up to the replicated position; acknowledgements go to the master."""

    def __init__(self, writer: RemoteWriter, *, notifier: Notifier, **kwargs: Any) -> None:
        super().__init__(notifier=notifier, **kwargs)
        self._writer = writer
        self._replica = notifier

    def current_position(self) -> int:
        return self._replica.current_token.get(StreamName.TO_DEVICE)

    async def ack(self, user_id: str, device_id: str, up_to_pos: int) -> None:
        await self._writer.write(writes.TO_DEVICE_ACK, {"user_id": user_id, "device_id": device_id,
                                                        "up_to": up_to_pos})

    async def send_to_device(self, requester: Requester, event_type: str, txn_id: str, body: JsonDict) -> None:
        raise RuntimeError("to-device messages are sent through the master")


class ReplicaDeviceListUpdater(DeviceListUpdater):
    """Device list positions as replicated here; changes are recorded by the master."""

    def __init__(self, *, notifier: Notifier, **kwargs: Any) -> None:
        super().__init__(notifier=notifier, **kwargs)
        self._replica = notifier

    def current_position(self) -> int:
        return self._replica.current_token.get(StreamName.DEVICE_LISTS)

    async def write_change(self, user_id: str, write: Any, wake_only: Optional[str] = None) -> Any:
        raise RuntimeError("device list changes are recorded by the master")


class RemoteTransactionHandler(TransactionHandler):
    """Inbound ``/send`` on a federation reader: checked here, run by the master.

    The servlet has authenticated the origin (X-Matrix) and checked the body's
    ``origin``; the shape and size limits are checked here, so a bad
    transaction costs the master nothing.  The master processes PDUs and EDUs
    (``federation_transaction``, idempotent per ``(origin, txn_id)``) and the
    reader answers once its replica has the persisted events.
    """

    def __init__(self, writer: RemoteWriter) -> None:  # noqa: D107 - base deliberately not initialised
        self._writer = writer

    async def on_transaction(self, origin: str, txn_id: str, body: JsonDict) -> JsonDict:
        pdus, edus = transaction_contents(body)
        return await self._writer.write(writes.FEDERATION_TRANSACTION, {
            "origin": origin, "txn_id": txn_id, "body": {"pdus": pdus, "edus": edus},
        })
