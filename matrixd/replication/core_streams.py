"""Registry entries of the streams the room core writes: events, backfill, current_state_deltas, caches.

Each function builds the entry from the stores of the process it runs in;
``current_token`` is passed only where the stream is written (the master).
"""

from __future__ import annotations

import logging

from typing import Callable, Iterable, Optional, Sequence

import attrs

from matrixd.replication.caches import CacheRegistry
from matrixd.replication.streams import ReplicationStream, StreamPage, page_from_rows
from matrixd.storage.cache_invalidation import CacheInvalidationStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.models import EventStreamRow
from matrixd.streams.token import StreamName

MEMBER = "m.room.member"
REDACTION = "m.room.redaction"

logger = logging.getLogger(__name__)


@attrs.frozen(slots=True)
class EventsStreamRow:
    """An event that joined a timeline (token: its stream ordering; for backfill, minus it)."""

    event_id: str
    room_id: str
    type: str
    state_key: Optional[str]
    sender: str
    outlier: bool
    #: for m.room.redaction: the event it redacts (whose cached copy must go).
    redacts: Optional[str] = None


@attrs.frozen(slots=True)
class CurrentStateDeltaStreamRow:
    """One change of a room's current state (``event_id`` None: the key left the state)."""

    room_id: str
    type: str
    state_key: str
    event_id: Optional[str]
    prev_event_id: Optional[str]


@attrs.frozen(slots=True)
class CacheInvalidationRow:
    """Invalidate ``keys`` of the cache registered as ``cache_name`` (all keys if None)."""

    cache_name: str
    keys: Optional[tuple[str, ...]]


async def _event_rows(events: EventStore, rows: Sequence[EventStreamRow], sign: int) -> list[tuple[int, EventsStreamRow]]:
    redaction_ids = [r.event_id for r in rows if r.type == REDACTION]
    redacts: dict[str, Optional[str]] = {}
    if redaction_ids:
        for event_id, ev in (await events.get_events(redaction_ids)).items():
            redacts[event_id] = ev.redacts
    return [
        (sign * r.stream_ordering,
         EventsStreamRow(r.event_id, r.room_id, r.type, r.state_key, r.sender, r.outlier, redacts.get(r.event_id)))
        for r in rows
    ]


def _invalidate_events(events: EventStore, current_state: Optional[CurrentStateStore]) -> Callable[
    [Sequence[EventsStreamRow]], None
]:
    def invalidate(rows: Sequence[EventsStreamRow]) -> None:
        # An outlier joining the timeline and a redaction's target change what readers see.
        events.invalidate_events([r.event_id for r in rows] + [r.redacts for r in rows if r.redacts])
        if current_state is None:
            return
        # The deltas stream says exactly what changed, but it is a separate stream: drop the
        # room's state caches here too so nothing woken by this row reads stale membership.
        for r in rows:
            if r.state_key is not None and not r.outlier:
                current_state.invalidate_room_from_stream(r.room_id)
        members = [r.state_key for r in rows if r.type == MEMBER and r.state_key is not None and not r.outlier]
        if members:
            current_state.invalidate_users(members)

    return invalidate


def _event_wake_keys(row: EventsStreamRow) -> Iterable[str]:
    if row.type == MEMBER and row.state_key is not None:
        return (row.room_id, row.state_key)
    return (row.room_id,)


def events_stream(
    events: EventStore, current_state: CurrentStateStore, *, current_token: Optional[Callable[[], int]] = None
) -> ReplicationStream[EventsStreamRow]:
    """``events``: live events in stream ordering; feeds the sync token's ``events`` position."""

    async def get_updates(from_token: int, to_token: int, limit: int) -> StreamPage[EventsStreamRow]:
        rows = await events.get_event_stream_rows(from_token, to_token, limit)
        return page_from_rows(await _event_rows(events, rows, 1), to_token, limit, len(rows))

    return ReplicationStream(
        name="events", row_type=EventsStreamRow, get_updates=get_updates, current_token=current_token,
        invalidate=_invalidate_events(events, current_state), wake_keys=_event_wake_keys,
        notifier_stream=StreamName.EVENTS,
    )


def backfill_stream(
    events: EventStore, *, current_token: Optional[Callable[[], int]] = None
) -> ReplicationStream[EventsStreamRow]:
    """``backfill``: history fetched from other servers; token = minus the (negative) stream ordering.

    ``current_token`` is given the backfill generator's own (negative) token and negated here.
    """

    async def get_updates(from_token: int, to_token: int, limit: int) -> StreamPage[EventsStreamRow]:
        rows = await events.get_backfill_stream_rows(-from_token, -to_token, limit)
        return page_from_rows(await _event_rows(events, rows, -1), to_token, limit, len(rows))

    token: Optional[Callable[[], int]] = None
    if current_token is not None:
        backfill_token = current_token

        def token() -> int:
            return -backfill_token()

    return ReplicationStream(
        name="backfill", row_type=EventsStreamRow, get_updates=get_updates, current_token=token,
        invalidate=_invalidate_events(events, None),
    )


def current_state_deltas_stream(
    current_state: CurrentStateStore, *, current_token: Optional[Callable[[], int]] = None
) -> ReplicationStream[CurrentStateDeltaStreamRow]:
    """``current_state_deltas``: changes of rooms' current state, numbered like the events stream."""

    async def get_updates(from_token: int, to_token: int, limit: int) -> StreamPage[CurrentStateDeltaStreamRow]:
        rows = await current_state.get_current_state_deltas(from_token, to_token, limit)
        out = [
            (r.stream_id, CurrentStateDeltaStreamRow(r.room_id, r.type, r.state_key, r.event_id, r.prev_event_id))
            for r in rows
        ]
        return page_from_rows(out, to_token, limit, len({r.stream_id for r in rows}))

    def invalidate(rows: Sequence[CurrentStateDeltaStreamRow]) -> None:
        for room_id in {r.room_id for r in rows}:
            current_state.invalidate_room_from_stream(room_id)
        members = [r.state_key for r in rows if r.type == MEMBER]
        if members:
            current_state.invalidate_users(members)

    def wake_keys(row: CurrentStateDeltaStreamRow) -> Iterable[str]:
        # Mostly a repeat of the event's own wake-up, but a state change without an event (a
        # partial-state room's resync) has nothing else to wake the room's syncs.
        if row.type == MEMBER and row.state_key is not None:
            return (row.room_id, row.state_key)
        return (row.room_id,)

    return ReplicationStream(
        name="current_state_deltas", row_type=CurrentStateDeltaStreamRow, get_updates=get_updates,
        current_token=current_token, invalidate=invalidate, wake_keys=wake_keys,
    )


def caches_stream(
    store: CacheInvalidationStore, caches: CacheRegistry, *, current_token: Optional[Callable[[], int]] = None
) -> ReplicationStream[CacheInvalidationRow]:
    """``caches``: invalidations of named caches (see :mod:`matrixd.replication.caches`)."""

    async def get_updates(from_token: int, to_token: int, limit: int) -> StreamPage[CacheInvalidationRow]:
        if current_token is None and from_token < await store.get_pruned_up_to():
            # A reader catching up from before the pruned rows: what it missed is unknown.
            logger.warning("replication: caches rows after %d were pruned; clearing every cache", from_token)
            caches.clear_all()
        records = await store.get_invalidations(from_token, to_token, limit)
        rows = [(r.stream_id, CacheInvalidationRow(r.cache_name, r.keys)) for r in records]
        return page_from_rows(rows, to_token, limit, len(records))

    def invalidate(rows: Sequence[CacheInvalidationRow]) -> None:
        for row in rows:
            caches.invalidate(row.cache_name, row.keys)

    return ReplicationStream(
        name="caches", row_type=CacheInvalidationRow, get_updates=get_updates, current_token=current_token,
        invalidate=invalidate,
    )
