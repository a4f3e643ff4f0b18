"""Persisting events this server accepts into a room's timeline, then announcing them.

The order of effects is the one the architecture requires: write (one
transaction, caches invalidated by the writer), then advance the stream
position, then wake waiting requests.  Replication to workers hangs off the
same announcement.
"""

from __future__ import annotations

import collections
import logging
from typing import Awaitable, Callable, Mapping, Optional, Sequence

import attrs
from prometheus_client import Counter
from twisted.internet import defer

from matrixd.events.event import Event, StateMap
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.database import Cursor
from matrixd.storage.events_writer import EventWriter, ExtraTxnWrites
from matrixd.storage.models import EventContext, StateDelta
from matrixd.storage.state import StateGroupStore
from matrixd.storage.streams import StreamIdGenerator
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName

logger = logging.getLogger(__name__)

#: How long a reply waits for its event's announcement (push evaluation first) before going out anyway.
ANNOUNCE_WAIT_SECONDS = 10.0

EVENTS_PERSISTED = Counter(
    "matrixd_events_persisted_total", "Events persisted into room timelines by this process", ["origin"]
)
# Synapse's names: every persisted event, and per (type, local/remote, origin).
SYNAPSE_PERSISTED = Counter("synapse_storage_events_persisted_events", "Events persisted")
SYNAPSE_PERSISTED_SEP = Counter("synapse_storage_events_persisted_events_sep", "Events persisted, by type and origin",
                                ["type", "origin_type", "origin_entity"])
# Event types counted by name; everything else is "*other*" (bounded label values).
_COUNTED_TYPES = frozenset({
    "m.room.message", "m.room.encrypted", "m.room.member", "m.room.create", "m.room.power_levels",
    "m.room.join_rules", "m.room.history_visibility", "m.room.name", "m.room.topic", "m.room.avatar",
    "m.room.canonical_alias", "m.room.redaction", "m.reaction", "m.room.server_acl", "m.room.tombstone",
    "m.room.guest_access", "m.room.encryption", "m.room.pinned_events", "m.room.third_party_invite",
})


def count_persisted(events: Sequence[Event], local: bool) -> None:
    """Count persisted events under Synapse's metric names (origin: a local client or the sender's server)."""
    SYNAPSE_PERSISTED.inc(len(events))
    # One child lookup per distinct label set (a remote join persists thousands of members at once).
    counts = collections.Counter(
        (ev.type if ev.type in _COUNTED_TYPES else "*other*", "*client*" if local else ev.sender.split(":", 1)[-1])
        for ev in events
    )
    for (event_type, origin), n in counts.items():
        SYNAPSE_PERSISTED_SEP.labels(event_type, "local" if local else "remote", origin).inc(n)

#: Called after an event is persisted and announced (push, federation sending, app services...).
PersistedEventCallback = Callable[[Event], object]
#: Called (room lock held) just before a timeline event is written: rows to write in its transaction, if any.
PrePersistHook = Callable[[Event], Awaitable[Optional[ExtraTxnWrites]]]


@attrs.frozen(slots=True)
class PersistedEvent:
    event: Event
    stream_ordering: int
    state_group: Optional[int]


class EventPersister:
    """The master's single path for putting new events into rooms."""

    def __init__(
        self,
        *,
        writer: EventWriter,
        state_store: StateGroupStore,
        current_state: CurrentStateStore,
        stream_ids: StreamIdGenerator,
        notifier: Notifier,
    ) -> None:
        self._writer = writer
        self._state = state_store
        self._current = current_state
        self._stream_ids = stream_ids
        self._notifier = notifier
        self._callbacks: list[PersistedEventCallback] = []
        self._announcer: Optional[Callable[[Sequence[Event]], None]] = None
        self._pre_persist: Optional[PrePersistHook] = None
        writer.event_store.add_invalidation_listener(state_store.forget_events)

    def set_announcer(self, announcer: Callable[[Sequence[Event]], None]) -> None:
        """Replace the default announcement (wake this process's notifier directly).

        The master sets the replication publisher here, so its own rows go
        through the same dispatcher as workers' (invalidate, advance, wake) and
        the notifier is woken once.
        """
        self._announcer = announcer

    def set_pre_persist_hook(self, hook: PrePersistHook) -> None:
        """Let ``hook`` add rows to each new timeline event's own transaction (the push actions)."""
        self._pre_persist = hook

    async def _extra_writes(self, event: Event) -> Optional[ExtraTxnWrites]:
        return await self._pre_persist(event) if self._pre_persist is not None else None

    def add_persisted_callback(self, cb: PersistedEventCallback) -> None:
        self._callbacks.append(cb)

    async def persist_new_event(
        self,
        event: Event,
        state_before: StateMap,
        group_before: Optional[int],
        *,
        new_current_state: Optional[StateMap] = None,
        redaction_authorised: bool = False,
    ) -> PersistedEvent:
        """Persist an accepted local event (room lock held).

        ``state_before`` is the state at the event.  ``new_current_state`` is
        the room's state once the event is persisted, when the caller worked it
        out (the event cites only some extremities, or merges forks); None
        means the event extends every extremity, so a state event's state
        after it becomes the current state and a message changes nothing.
        """
        room_id = event.room_id
        if event.is_state() and not event.rejected:
            key = event.state_key_tuple()
            state_after = dict(state_before)
            state_after[key] = event.event_id
            group_after = await self._state.store_state_group(
                event.event_id, room_id, group_before, {key: event.event_id}, state_after
            )
        else:
            state_after = dict(state_before)
            if group_before is None:
                group_before = await self._state.store_state_group(event.event_id, room_id, None, None, state_after)
            group_after = group_before

        if new_current_state is None and event.is_state() and not event.rejected:
            new_current_state = state_after
        deltas = await self._current_state_delta(room_id, new_current_state)

        ctx = EventContext(
            state_group=group_after,
            state_group_before=group_before,
            redaction_authorised=redaction_authorised,
        )
        result = await self._writer.persist_events([(event, ctx)], state_delta_by_room=deltas,
                                                   extra_writes=await self._extra_writes(event))
        if event.event_id in result.stream_orderings:  # not a duplicate: its groups are these
            self._state.remember_event_groups([(event.event_id, group_after, group_before)])
        stream_ordering = result.stream_orderings.get(event.event_id, event.internal_metadata.stream_ordering or 0)
        EVENTS_PERSISTED.labels("local").inc()
        count_persisted([event], local=True)
        self._announce([event])
        return PersistedEvent(event, stream_ordering, group_after)

    async def persist_new_messages(
        self, events: Sequence[tuple[Event, bool]], state_before: StateMap, group_before: Optional[int],
        *, new_current_state: Optional[StateMap] = None,
    ) -> list[PersistedEvent]:
        """Persist a chain of accepted local message (non-state) events in one transaction.

        ``events`` are ``(event, redaction_authorised)``; the first extends the
        room's forward extremities (or the deepest of them), each later one
        extends the one before.  None changes state, so all have
        ``state_before`` (stored as ``group_before``) before and after them.
        ``new_current_state``: the room's state afterwards when it may differ
        from the current state (the first event merges forks or leaves some
        extremities uncited); None leaves it alone.
        """
        if not events:
            return []
        first = events[0][0]
        if any(ev.is_state() for ev, _ in events):
            raise ValueError("persist_new_messages takes message events only")
        if group_before is None:
            group_before = await self._state.store_state_group(
                first.event_id, first.room_id, None, None, dict(state_before)
            )
        batch = [
            (ev, EventContext(state_group=group_before, state_group_before=group_before,
                              redaction_authorised=authorised))
            for ev, authorised in events
        ]
        writes = [w for w in [await self._extra_writes(ev) for ev, _ in events] if w is not None]

        def extra_writes(txn: Cursor, orderings: Mapping[str, int]) -> None:
            for write in writes:  # each writes only its own event's rows (keyed by event id)
                write(txn, orderings)

        deltas = await self._current_state_delta(first.room_id, new_current_state)
        result = await self._writer.persist_events(batch, state_delta_by_room=deltas,
                                                   extra_writes=extra_writes if writes else None)
        self._state.remember_event_groups(
            (ev.event_id, group_before, group_before) for ev, _ in events if ev.event_id in result.stream_orderings
        )
        EVENTS_PERSISTED.labels("local").inc(len(events))
        count_persisted([ev for ev, _ in events], local=True)
        self._announce([ev for ev, _ in events])
        return [
            PersistedEvent(ev, result.stream_orderings.get(ev.event_id, ev.internal_metadata.stream_ordering or 0),
                           group_before)
            for ev, _ in events
        ]

    async def persist_received_event(
        self,
        event: Event,
        state_before: StateMap,
        group_before: Optional[int],
        *,
        new_current_state: Optional[StateMap],
        backfilled: bool = False,
        redaction_authorised: bool = False,
    ) -> PersistedEvent:
        """Persist a timeline event received from another server (room lock held).

        Unlike :meth:`persist_new_event` the event need not extend every
        forward extremity, so the caller says what the room's current state
        becomes (``new_current_state``; None leaves it alone, as for rejected,
        soft-failed and backfilled events).
        """
        room_id = event.room_id
        state_after = dict(state_before)
        if event.is_state() and not event.rejected:
            state_after[event.state_key_tuple()] = event.event_id
        if group_before is None:
            group_before = await self._state.store_state_group(event.event_id, room_id, None, None, state_before)
        group_after = group_before
        if state_after != state_before:
            group_after = await self._state.store_state_group(
                event.event_id, room_id, group_before, None, state_after
            )
        deltas = await self._current_state_delta(room_id, None if backfilled else new_current_state)
        ctx = EventContext(state_group=group_after, state_group_before=group_before,
                           redaction_authorised=redaction_authorised)
        extra = None if backfilled else await self._extra_writes(event)
        result = await self._writer.persist_events([(event, ctx)], state_delta_by_room=deltas, backfilled=backfilled,
                                                   extra_writes=extra)
        if event.event_id in result.stream_orderings:  # not a duplicate: its groups are these
            self._state.remember_event_groups([(event.event_id, group_after, group_before)])
        stream_ordering = result.stream_orderings.get(event.event_id, event.internal_metadata.stream_ordering or 0)
        EVENTS_PERSISTED.labels("federation").inc()
        count_persisted([event], local=False)
        self._announce([event])
        return PersistedEvent(event, stream_ordering, group_after)

    async def _current_state_delta(self, room_id: str, new_current: Optional[StateMap]) -> dict[str, StateDelta]:
        """The change from the room's current state to ``new_current`` (none if that is None)."""
        if new_current is None:
            return {}
        old_current = await self._current.get_current_state_ids(room_id)
        return {room_id: StateDelta.between(old_current, new_current)}

    async def persist_outliers(self, events: Sequence[Event], *, out_of_band_membership: bool = False) -> None:
        """Store events whose place in the DAG we do not know (auth chains, state, invites).

        Each event must have ``internal_metadata.outlier`` set.  With
        ``out_of_band_membership`` a local user's membership event (an invite
        or knock in a room this server is not in, or its rejection) also sets
        their membership for sync.
        """
        if not events:
            return
        for ev in events:
            if not ev.internal_metadata.outlier:
                raise ValueError(f"{ev.event_id} is not marked as an outlier")
        ctx = EventContext(out_of_band_membership=out_of_band_membership)
        await self._writer.persist_events([(ev, ctx) for ev in events])
        EVENTS_PERSISTED.labels("outlier").inc(len(events))
        count_persisted(events, local=False)
        if out_of_band_membership:
            self._announce(events)

    async def replace_current_state(self, room_id: str, new_state: StateMap,
                                    in_same_txn: Optional[Callable[[Cursor, int], None]] = None,
                                    after_commit: Optional[Callable[[int], None]] = None) -> int:
        """Set a room's current state without a new event (room lock held): a partial-state room's full
        state became known.  Announced like an event, so /sync and workers see the member changes.

        Returns the events-stream position allocated for the change (one is allocated even if nothing
        changed, so a position strictly after every sync computed before exists). ``in_same_txn`` runs
        in the change's transaction with that position, ``after_commit`` once it committed; both
        before anyone is woken at it.
        """
        old = await self._current.get_current_state_ids(room_id)
        delta = StateDelta.between(old, new_state)
        result = await self._writer.persist_events([], state_delta_by_room={room_id: delta}, in_same_txn=in_same_txn)
        if after_commit is not None:
            after_commit(result.max_stream_ordering)  # before anyone is woken at the new position
        if self._announcer is not None:
            self._announcer([])
        else:
            keys = {room_id} | {sk for t, sk in [*delta.to_delete, *delta.to_insert] if t == "m.room.member"}
            self._notifier.on_new_position(StreamName.EVENTS, self._stream_ids.get_current_token(), keys)
        return result.max_stream_ordering

    def wait_announced(self, stream_ordering: int) -> "defer.Deferred[None]":
        """Fire once this process's notifier has announced events up to ``stream_ordering``.

        State and membership events are announced only after their push
        actions are stored (see :mod:`matrixd.push.actions`), which is after
        they are persisted; a client told its event is in the room waits here,
        so its next ``/sync`` (and an invitee's) shows it.  Bounded, so a slow
        push evaluation delays a reply but never hangs it.
        """
        target = self._notifier.current_token.copy_and_advance(StreamName.EVENTS, stream_ordering)
        return self._notifier.wait_for_token(target, ANNOUNCE_WAIT_SECONDS)

    def _announce(self, events: Sequence[Event]) -> None:
        if self._announcer is not None:
            self._announcer(events)
        else:
            self._wake_notifier(events)
        for ev in events:
            for cb in self._callbacks:
                try:
                    cb(ev)
                except Exception:
                    logger.exception("persisted-event callback %r failed for %s", cb, ev.event_id)

    def _wake_notifier(self, events: Sequence[Event]) -> None:
        keys: set[str] = set()
        for ev in events:
            keys.add(ev.room_id)
            if ev.type == "m.room.member" and ev.state_key is not None:
                keys.add(ev.state_key)
        self._notifier.on_new_position(StreamName.EVENTS, self._stream_ids.get_current_token(), keys)
