"""Loading the timelines of many rooms at once, filtered, with ``limited`` and ``prev_batch``.

One batched query finds the latest ``limit + 1`` events of every room in its
stream range (the extra one tells whether the timeline is ``limited``);
events come from the event cache.  Only rooms whose filter or history
visibility hid events go back for more, a few rounds at most.
"""

from __future__ import annotations

from typing import Mapping, Optional

import attrs

from matrixd.events.event import Event
from matrixd.handlers.filtering import EventFilter
from matrixd.handlers.sync.types import EventVisibility, allows_every_event
from matrixd.storage.events import EventStore, TimelineRow
from matrixd.streams.token import RoomStreamToken

#: Extra fetches for a room whose filter hid too much of its latest events.
MAX_REFILL_ROUNDS = 3


@attrs.define
class RoomTimeline:
    """A room's timeline for one sync.

    Attributes:
        events: the events to send, oldest first.
        limited: older events in the range were left out.
        prev_batch: where ``/messages`` continues backwards from.
        hidden_state: state events of the scanned range the filter hid, oldest
            first (the state section must carry what they changed).
    """

    events: list[Event]
    limited: bool
    prev_batch: Optional[RoomStreamToken]
    hidden_state: list[Event] = attrs.field(factory=list)

    @property
    def hid_state(self) -> bool:
        return bool(self.hidden_state)


@attrs.frozen(slots=True)
class TimelineRequest:
    """``lower < stream_ordering <= upper``; events at or before ``check_visibility_upto``
    are run through history visibility (None: none need it, the user was joined throughout)."""

    lower: Optional[int]
    upper: int
    check_visibility_upto: Optional[int]


def _prev_batch(rows: list[TimelineRow]) -> RoomStreamToken:
    """Just before the earliest (in DAG order) of the scanned events.

    A topological position means "just after the event with this key", so
    one stream step below the earliest key excludes it and nothing before it
    (stream orderings are signed: backfilled history is negative).
    """
    topo, stream = min((r.topological_ordering, r.stream_ordering) for r in rows)
    return RoomStreamToken(stream=stream - 1, topological=topo)


class TimelineLoader:
    def __init__(self, events: EventStore, visibility: EventVisibility) -> None:
        self._events = events
        self._visibility = visibility

    async def load(
        self,
        user_id: str,
        requests: Mapping[str, TimelineRequest],
        limit: int,
        event_filter: EventFilter,
    ) -> dict[str, RoomTimeline]:
        """Timelines of every requested room (rooms with an empty range get an empty timeline)."""
        out: dict[str, RoomTimeline] = {}
        bounds: dict[str, tuple[Optional[int], int]] = {}
        for room_id, req in requests.items():
            if req.lower is not None and req.lower >= req.upper:
                out[room_id] = RoomTimeline([], False, RoomStreamToken(stream=req.upper))
            else:
                bounds[room_id] = (req.lower, req.upper)
        if not bounds:
            return out
        rows_by_room = await self._events.get_recent_timeline_rows(bounds, limit + 1)
        wanted = [r.event_id for rows in rows_by_room.values() for r in rows[:limit]]
        events = await self._events.get_events(wanted)
        for room_id, (lower, upper) in bounds.items():
            rows = rows_by_room.get(room_id, [])
            req = requests[room_id]
            scanned = rows[:limit]
            more = len(rows) > limit
            kept, hidden = await self._keep(user_id, scanned, events, event_filter, req)
            rounds = 0
            while more and len(kept) < limit and rounds < MAX_REFILL_ROUNDS and scanned:
                rounds += 1
                next_upper = scanned[-1].stream_ordering - 1
                extra = (await self._events.get_recent_timeline_rows({room_id: (lower, next_upper)}, limit + 1)).get(
                    room_id, []
                )
                batch = extra[:limit]
                more = len(extra) > limit
                batch_events = await self._events.get_events([r.event_id for r in batch])
                older, older_hidden = await self._keep(user_id, batch, batch_events, event_filter, req)
                hidden = older_hidden + hidden
                scanned = scanned + batch
                kept = (older + kept)[-limit:]
            if scanned:
                prev_batch = _prev_batch(scanned)
            else:
                prev_batch = RoomStreamToken(stream=upper)
            out[room_id] = RoomTimeline(kept, more, prev_batch, hidden)
        return out

    async def _keep(
        self,
        user_id: str,
        rows: list[TimelineRow],
        events: Mapping[str, Event],
        event_filter: EventFilter,
        req: TimelineRequest,
    ) -> tuple[list[Event], list[Event]]:
        """The events of ``rows`` (newest first) the user gets, and the state events the filter hid; oldest first."""
        ordered = [events[r.event_id] for r in reversed(rows) if r.event_id in events]
        if req.check_visibility_upto is not None:
            upto = req.check_visibility_upto
            to_check = [e for e in ordered if (e.internal_metadata.stream_ordering or 0) <= upto]
            if to_check:
                # The filter may hand back altered copies (e.g. pruned): use what it returns.
                visible = {e.event_id: e for e in await self._visibility.filter_events_for_client(user_id, to_check)}
                ordered = [
                    e if (e.internal_metadata.stream_ordering or 0) > upto else visible[e.event_id]
                    for e in ordered
                    if (e.internal_metadata.stream_ordering or 0) > upto or e.event_id in visible
                ]
        if allows_every_event(event_filter):
            return ordered, []
        kept = []
        hidden = []
        for e in ordered:
            if event_filter.allows(e):
                kept.append(e)
            elif e.is_state():
                hidden.append(e)
        return kept, hidden
