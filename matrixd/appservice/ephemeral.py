"""Feeding typing, receipts and presence to services that set ``receive_ephemeral``,
and their users' to-device messages to services that opted in to them (MSC4203).

These streams belong to the sync and end-to-end areas; rather than each writer
knowing about application services, this follower waits on the notifier for
each stream's position to move (``Notifier.wait_for_token``), reads the new
rows through the stream's own catch-up reader and queues them on the
transaction senders.  Only runs when some service opted in.  Ephemeral data is
best effort: positions are kept in memory and a restart resumes from "now".
Private read receipts (``m.read.private``) only go to services whose user
namespace covers the receipt's user (spec: "Pushing ephemeral data").
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Awaitable, Callable, Optional

from twisted.internet import defer

from matrixd.appservice.sender import AppServiceTransactions
from matrixd.handlers.presence import format_presence
from matrixd.handlers.typing import TypingHandler
from matrixd.storage.presence import PresenceStore
from matrixd.storage.receipts import ReceiptStore
from matrixd.storage.to_device import ToDeviceStore
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName
from matrixd.types import JsonDict
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

BATCH = 100
WAIT_TIMEOUT = 60.0

#: ``(edu, room_id, user_ids)``: what ``AppServiceTransactions.notify_ephemeral`` takes.
Edu = tuple[JsonDict, Optional[str], tuple[str, ...]]


class EphemeralFollower:
    def __init__(self, *, clock: Clock, notifier: Notifier, transactions: AppServiceTransactions,
                 typing: TypingHandler, receipts: ReceiptStore, presence: PresenceStore,
                 to_device: Optional[ToDeviceStore] = None) -> None:
        self._clock = clock
        self._notifier = notifier
        self._transactions = transactions
        self._readers: dict[StreamName, Callable[[int, int], Awaitable[list[Edu]]]] = {
            StreamName.TYPING: self._typing_edus,
            StreamName.RECEIPTS: self._receipt_edus,
            StreamName.PRESENCE: self._presence_edus,
        }
        #: Set when some service receives to-device messages.
        self._to_device = to_device
        if to_device is not None:
            self._readers[StreamName.TO_DEVICE] = self._to_device_messages
        self._typing = typing
        self._receipts = receipts
        self._presence = presence
        self._loops: list[defer.Deferred[None]] = []
        self._waiting: dict[StreamName, defer.Deferred[None]] = {}
        self._stopped = False

    def start(self) -> None:
        for stream in self._readers:
            d = defer.ensureDeferred(self._follow(stream))
            d.addErrback(self._log_failure, stream)
            self._loops.append(d)

    def stop(self) -> None:
        self._stopped = True
        for d in list(self._waiting.values()):
            if not d.called:
                d.callback(None)

    def _log_failure(self, failure: Any, stream: StreamName) -> None:
        logger.error("application service %s follower stopped: %s", stream.value, failure.getTraceback())

    async def _follow(self, stream: StreamName) -> None:
        position = self._notifier.current_token.get(stream)
        while not self._stopped:
            target = self._notifier.current_token.copy_and_replace(stream, position + 1)
            waiting = self._notifier.wait_for_token(target, WAIT_TIMEOUT)
            self._waiting[stream] = waiting
            await waiting
            if self._stopped:
                return
            new = self._notifier.current_token.get(stream)
            if new <= position:
                continue
            try:
                for edu, room_id, user_ids in await self._readers[stream](position, new):
                    await self._transactions.notify_ephemeral(edu, room_id=room_id, user_ids=user_ids)
            except Exception:
                logger.exception("application services: cannot read %s updates %d..%d", stream.value, position, new)
            position = new

    async def _typing_edus(self, from_pos: int, to_pos: int) -> list[Edu]:
        return [({"type": "m.typing", "room_id": row.room_id, "content": {"user_ids": list(row.user_ids)}},
                 row.room_id, ()) for row in self._typing.get_updates(from_pos, to_pos, BATCH * 10)]

    async def _receipt_edus(self, from_pos: int, to_pos: int) -> list[Edu]:
        """Public receipts by room (for services interested in the room); each private receipt on its own,
        routed by its user only (for services whose user namespace covers them)."""
        by_room: dict[str, JsonDict] = defaultdict(dict)
        private: list[Edu] = []
        pos = from_pos
        while True:
            rows = await self._receipts.get_updates(pos, to_pos, BATCH)
            for row in rows:
                data = dict(row.data)
                if row.thread_id is not None:
                    data["thread_id"] = row.thread_id
                if row.receipt_type == "m.read.private":
                    edu = {"type": "m.receipt", "room_id": row.room_id,
                           "content": {row.event_id: {row.receipt_type: {row.user_id: data}}}}
                    private.append((edu, None, (row.user_id,)))
                    continue
                content = by_room[row.room_id]
                content.setdefault(row.event_id, {}).setdefault(row.receipt_type, {})[row.user_id] = data
            if len(rows) < BATCH:
                break
            pos = rows[-1].stream_id
        public: list[Edu] = [({"type": "m.receipt", "room_id": room_id, "content": content}, room_id, ())
                             for room_id, content in by_room.items() if content]
        return public + private

    async def _presence_edus(self, from_pos: int, to_pos: int) -> list[Edu]:
        now = self._clock.time_msec()
        states = await self._presence.get_updates(from_pos, to_pos, BATCH * 10)
        return [({"type": "m.presence", "sender": s.user_id, "content": format_presence(s, now)}, None,
                 (s.user_id,)) for s in states]

    async def _to_device_messages(self, from_pos: int, to_pos: int) -> list[Edu]:
        """Queues the messages itself (they are not EDUs of the ``ephemeral`` list): returns nothing."""
        assert self._to_device is not None
        pos = from_pos
        while pos < to_pos:
            upper = min(to_pos, pos + BATCH)  # BATCH send requests at a time
            for _stream_id, user_id, device_id, message in await self._to_device.get_inbox_messages(pos, upper):
                self._transactions.notify_to_device({**message, "to_user_id": user_id, "to_device_id": device_id})
            pos = upper
        return []
