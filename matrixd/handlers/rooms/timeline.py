"""Walking a room's timeline in DAG order for a reader: filters, history visibility, tokens.

Shared by ``/messages`` and ``/context``.  Positions are
:data:`~matrixd.storage.models.TopologicalPosition` pairs ``(depth, stream)``
meaning "just after the event with that key"; tokens are their
``t<depth>-<stream>`` form (:class:`~matrixd.streams.token.RoomStreamToken`).

A walk reads batches, drops what the filter or history visibility hides, and
continues until it has ``limit`` events, runs out of events, or has read
:data:`MAX_ROUNDS` batches (so a reader who may see nothing of a long history
gets an empty page and a token to continue from, not a scan of the room).
"""

from __future__ import annotations

from typing import Optional

import attrs

from matrixd.events.event import Event
from matrixd.handlers.filtering import EventFilter
from matrixd.handlers.visibility import VisibilityFilter
from matrixd.storage.events import Direction, EventStore
from matrixd.storage.models import TopologicalPosition
from matrixd.streams.token import RoomStreamToken

MAX_ROUNDS = 5
MAX_BATCH = 1000
#: Before every event: depths start at 1.
ROOM_START: TopologicalPosition = (0, 0)
#: Beyond any stream ordering a server hands out.
_FAR_FUTURE_STREAM = 2**62


@attrs.frozen(slots=True)
class TimelineSlice:
    """Events in walk order, and the position to continue from (None: nothing more in range)."""

    events: list[Event]
    next_position: Optional[TopologicalPosition]


def position_after(event: Event, direction: Direction) -> TopologicalPosition:
    """Where a walk in ``direction`` continues once it has passed ``event``."""
    stream = event.internal_metadata.stream_ordering or 0
    if direction == "b":
        return (event.depth, stream - 1)
    return (event.depth, stream)


def position_token(position: TopologicalPosition) -> str:
    return RoomStreamToken(stream=position[1], topological=position[0]).to_string()


class TimelineWalker:
    def __init__(self, *, events: EventStore, visibility: VisibilityFilter) -> None:
        self._events = events
        self._visibility = visibility

    async def resolve_token(self, room_id: str, token: str) -> TopologicalPosition:
        """The DAG position of a pagination or sync token (400 ``M_INVALID_PARAM`` if malformed)."""
        parsed = RoomStreamToken.parse_pagination(token)
        if parsed.topological is not None:
            return (parsed.topological, parsed.stream)
        position = await self._events.get_topological_position_at_stream(room_id, parsed.stream)
        return position if position is not None else ROOM_START

    async def room_end(self, room_id: str) -> TopologicalPosition:
        """The position after the room's latest timeline event."""
        position = await self._events.get_topological_position_at_stream(room_id, _FAR_FUTURE_STREAM)
        return position if position is not None else ROOM_START

    async def walk(
        self,
        user_id: str,
        room_id: str,
        *,
        from_position: Optional[TopologicalPosition],
        to_position: Optional[TopologicalPosition],
        direction: Direction,
        limit: int,
        event_filter: EventFilter,
        is_peeking: bool = False,
    ) -> TimelineSlice:
        """Up to ``limit`` events ``user_id`` may see between the positions (None: unbounded)."""
        collected: list[Event] = []
        cursor = from_position
        if limit <= 0:
            return TimelineSlice(collected, cursor)
        batch_size = min(max(2 * limit, 20), MAX_BATCH)
        for _ in range(MAX_ROUNDS):
            batch = await self._events.get_room_events_topological(
                room_id, cursor, to_position, batch_size, direction
            )
            if not batch:
                return TimelineSlice(collected, None)
            candidates = [e for e in batch if event_filter.allows(e)]
            visible = {
                e.event_id
                for e in await self._visibility.filter_events_for_client(user_id, candidates, is_peeking=is_peeking)
            }
            for event in batch:
                cursor = position_after(event, direction)
                if event.event_id in visible:
                    collected.append(event)
                    if len(collected) >= limit:
                        return TimelineSlice(collected, cursor)
            if len(batch) < batch_size:
                return TimelineSlice(collected, None)
            batch_size = min(batch_size * 2, MAX_BATCH)
        return TimelineSlice(collected, cursor)
