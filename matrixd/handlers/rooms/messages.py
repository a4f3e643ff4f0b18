"""``GET /rooms/{roomId}/messages``: paging through a room's history.

``from`` absent means the latest visible event for ``dir=b`` and the room's
beginning for ``dir=f`` (spec v1.3).  A user who left pages only up to their
leave event.  ``end`` is omitted once no further events exist in the range.
With ``lazy_load_members`` the response's ``state`` holds the member events
of the chunk's senders (redundant ones included: the spec allows it, and it
keeps pages independent of each other).
"""

from __future__ import annotations

from typing import Optional, Protocol

from matrixd.events.event import Event, JsonDict
from matrixd.handlers.filtering import EventFilter
from matrixd.handlers.rooms.access import RoomAccessChecker
from matrixd.handlers.rooms.serialize import ClientEventSerializer
from matrixd.handlers.rooms.timeline import ROOM_START, TimelineWalker, position_token
from matrixd.storage.events import Direction, EventStore
from matrixd.storage.state import StateGroupStore
from matrixd.types import Requester

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000


class BackfillHook(Protocol):
    """Fetches history from other servers (``matrixd.federation.backfill.FederationBackfiller``)."""

    async def backfill(self, room_id: str, limit: int) -> bool: ...


class PaginationHandler:
    def __init__(
        self,
        *,
        access: RoomAccessChecker,
        walker: TimelineWalker,
        events: EventStore,
        state: StateGroupStore,
        serializer: ClientEventSerializer,
    ) -> None:
        self._access = access
        self._walker = walker
        self._events = events
        self._state = state
        self._serializer = serializer
        self._backfill: Optional[BackfillHook] = None

    def set_backfill(self, hook: "BackfillHook") -> None:
        """Fetch older history from other servers when a backwards page runs out of events."""
        self._backfill = hook

    async def get_messages(
        self,
        requester: Requester,
        room_id: str,
        *,
        direction: Direction,
        from_token: Optional[str],
        to_token: Optional[str],
        limit: Optional[int],
        event_filter: EventFilter,
    ) -> JsonDict:
        """The ``/messages`` response body."""
        user_id = requester.user_id
        access = await self._access.check_can_read(user_id, room_id)
        if limit is None:
            limit = event_filter.limit_or(DEFAULT_LIMIT)
        limit = min(limit, MAX_LIMIT)

        from_pos = await self._walker.resolve_token(room_id, from_token) if from_token is not None else None
        to_pos = await self._walker.resolve_token(room_id, to_token) if to_token is not None else None
        read_limit = await self._access.read_limit(access)

        if direction == "b":
            if from_pos is None:
                from_pos = read_limit if read_limit is not None else await self._walker.room_end(room_id)
            elif read_limit is not None and from_pos > read_limit:
                from_pos = read_limit
        else:
            if from_pos is None:
                from_pos = ROOM_START
            if read_limit is not None and (to_pos is None or to_pos > read_limit):
                to_pos = read_limit
        start = from_token if from_token is not None else position_token(from_pos)

        page = await self._walker.walk(
            user_id, room_id, from_position=from_pos, to_position=to_pos, direction=direction, limit=limit,
            event_filter=event_filter, is_peeking=access.is_peeking,
        )
        if (self._backfill is not None and direction == "b" and len(page.events) < limit
                and await self._backfill.backfill(room_id, limit)):
            page = await self._walker.walk(
                user_id, room_id, from_position=from_pos, to_position=to_pos, direction=direction, limit=limit,
                event_filter=event_filter, is_peeking=access.is_peeking,
            )
        body: JsonDict = {
            "start": start,
            "chunk": await self._serializer.serialize_events(page.events, requester),
        }
        if page.next_position is not None:
            body["end"] = position_token(page.next_position)
        if event_filter.lazy_load_members and page.events:
            members = await self.sender_member_events(page.events[-1], {e.sender for e in page.events})
            body["state"] = await self._serializer.serialize_events(members, requester)
        return body

    async def sender_member_events(self, at: Event, senders: set[str]) -> list[Event]:
        """The member events of ``senders`` in the state after ``at``."""
        state = await self._state.get_state_ids_for_event(at.event_id)
        if state is None:
            return []
        ids = [state[("m.room.member", s)] for s in sorted(senders) if ("m.room.member", s) in state]
        return await self._events.get_events_as_list(ids)

