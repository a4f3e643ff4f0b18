"""Feeds the sender from the sync area's typing, receipts and presence streams.

Like the events stream, these are read by position (``TypingHandler.get_updates``,
``ReceiptStore.get_updates``, ``PresenceStore.get_updates``) when the notifier
says a stream moved, so the sync area's handlers need no federation hooks and
the feed can run wherever the sender runs.  Only local users' changes go out;
private receipts never do.  Typing rows carry a room's whole list: the feed
remembers which local users it last announced per room and sends the
differences as ``m.typing`` started/stopped.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Mapping, Optional

from twisted.internet import defer

from matrixd.federation.sender.service import FederationSenderService
from matrixd.federation.visibility import domain_or_none
from matrixd.handlers.presence import format_presence
from matrixd.handlers.typing import TypingHandler
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.presence import PresenceStore
from matrixd.storage.receipts import PRIVATE_RECEIPT_TYPES, ReceiptStore
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

BATCH = 500
WATCH_TIMEOUT_S = 60.0


class EphemeralStreamFeed:
    def __init__(self, *, server_name: str, clock: Clock, notifier: Notifier, sender: FederationSenderService,
                 typing: TypingHandler, receipts: ReceiptStore, presence: PresenceStore,
                 current_state: CurrentStateStore,
                 positions: Optional[Mapping[StreamName, Callable[[], int]]] = None) -> None:
        """``positions`` overrides where each stream is (a worker's replicas: the dispatcher's positions)."""
        self._server_name = server_name
        self._clock = clock
        self._notifier = notifier
        self._sender = sender
        self._typing = typing
        self._receipts = receipts
        self._presence = presence
        self._current_state = current_state
        self._positions: dict[StreamName, int] = {}
        self._announced_typing: dict[str, set[str]] = {}
        self._watches: list["defer.Deferred[None]"] = []
        self._busy: dict[StreamName, bool] = {}
        self._stopped = False
        self._current_of = dict(positions or {})

    def start(self) -> None:
        """Start from the current positions (what happened before start-up is not replayed)."""
        sources: list[tuple[StreamName, Callable[[], int], Callable[[int, int], Awaitable[None]]]] = [
            (StreamName.TYPING, self._typing.get_current_token, self._feed_typing),
            (StreamName.RECEIPTS, self._receipts.get_current_token, self._feed_receipts),
            (StreamName.PRESENCE, self._presence.get_current_token, self._feed_presence),
        ]
        for stream, current, feed in sources:
            current = self._current_of.get(stream, current)
            self._positions[stream] = current()
            watch = defer.ensureDeferred(self._watch(stream, current, feed))
            watch.addErrback(lambda f: f.trap(defer.CancelledError))
            self._watches.append(watch)

    def stop(self) -> None:
        self._stopped = True
        for d in self._watches:
            d.cancel()
        self._watches = []

    async def _watch(self, stream: StreamName, current: Callable[[], int],
                     feed: Callable[[int, int], Awaitable[None]]) -> None:
        while not self._stopped:
            upto = current()
            if upto <= self._positions[stream]:
                # Nothing new: wait for the stream to move. (Checked first, so that what arrived while
                # the last batch was being fed goes now, not at the next change or the timeout.)
                token = self._notifier.current_token
                target = max(token.get(stream), self._positions[stream]) + 1
                await self._notifier.wait_for_token(token.copy_and_replace(stream, target), WATCH_TIMEOUT_S)
                continue
            try:
                await feed(self._positions[stream], upto)
            except Exception:
                logger.exception("feeding %s to the federation sender failed", stream.value)
            self._positions[stream] = upto

    def _is_mine(self, user_id: str) -> bool:
        return domain_or_none(user_id) == self._server_name

    async def _feed_typing(self, from_pos: int, to_pos: int) -> None:
        for row in self._typing.get_updates(from_pos, to_pos, BATCH):
            now = {u for u in row.user_ids if self._is_mine(u)}
            before = self._announced_typing.get(row.room_id, set())
            for user_id in sorted(now - before):
                await self._sender.on_local_typing(row.room_id, user_id, True)
            for user_id in sorted(before - now):
                await self._sender.on_local_typing(row.room_id, user_id, False)
            if now:
                self._announced_typing[row.room_id] = now
            else:
                self._announced_typing.pop(row.room_id, None)

    async def _feed_receipts(self, from_pos: int, to_pos: int) -> None:
        pos: Optional[int] = from_pos
        while pos is not None and pos < to_pos:
            rows = await self._receipts.get_updates(pos, to_pos, BATCH)
            for row in rows:
                if row.receipt_type in PRIVATE_RECEIPT_TYPES or not self._is_mine(row.user_id):
                    continue
                await self._sender.on_local_receipt(row.room_id, row.receipt_type, row.user_id, [row.event_id],
                                                    row.data)
            pos = rows[-1].stream_id if len(rows) >= BATCH else None

    async def _feed_presence(self, from_pos: int, to_pos: int) -> None:
        pos: Optional[int] = from_pos
        while pos is not None and pos < to_pos:
            states = await self._presence.get_updates(pos, to_pos, BATCH)
            for state in states:
                if not self._is_mine(state.user_id):
                    continue
                rooms = await self._current_state.get_rooms_for_user(state.user_id)
                content = format_presence(state, self._clock.time_msec())
                content.setdefault("last_active_ago", 0)  # required in m.presence pushes
                await self._sender.on_local_presence(state.user_id, content, rooms)
            pos = states[-1].stream_id if len(states) >= BATCH else None
