"""Single events and the events around them: ``/rooms/{roomId}/event/{eventId}`` and ``/context/{eventId}``.

Unknown events, events of another room and events history visibility hides
are all 404 ``M_NOT_FOUND`` (the spec's "not found or no permission"); a
user with no read access to the room at all gets 403 first.
"""

from __future__ import annotations

from typing import Optional

from matrixd.api.errors import NotFoundError
from matrixd.events.event import Event, JsonDict
from matrixd.handlers.filtering import EventFilter
from matrixd.handlers.rooms.access import RoomAccessChecker, RoomReadAccess
from matrixd.handlers.rooms.serialize import ClientEventSerializer
from matrixd.handlers.rooms.timeline import TimelineWalker, position_after, position_token
from matrixd.handlers.visibility import VisibilityFilter
from matrixd.storage.events import EventStore
from matrixd.storage.state import StateGroupStore
from matrixd.types import Requester

DEFAULT_CONTEXT_LIMIT = 10
MAX_CONTEXT_LIMIT = 1000


class EventContextHandler:
    def __init__(
        self,
        *,
        access: RoomAccessChecker,
        walker: TimelineWalker,
        visibility: VisibilityFilter,
        events: EventStore,
        state: StateGroupStore,
        serializer: ClientEventSerializer,
    ) -> None:
        self._access = access
        self._walker = walker
        self._visibility = visibility
        self._events = events
        self._state = state
        self._serializer = serializer

    async def _visible_event(self, user_id: str, room_id: str, event_id: str) -> tuple[Event, RoomReadAccess]:
        access = await self._access.check_can_read(user_id, room_id)
        event = await self._events.get_event(event_id)
        if event is None or event.room_id != room_id:
            raise NotFoundError("Event not found")
        visible = await self._visibility.filter_events_for_client(user_id, [event], is_peeking=access.is_peeking)
        if not visible:
            raise NotFoundError("Event not found")
        return event, access

    async def get_event(self, requester: Requester, room_id: str, event_id: str) -> JsonDict:
        """The client JSON of one event the user may see."""
        event, _ = await self._visible_event(requester.user_id, room_id, event_id)
        return await self._serializer.serialize_event(event, requester)

    async def get_event_context(
        self, requester: Requester, room_id: str, event_id: str, *, limit: Optional[int], event_filter: EventFilter
    ) -> JsonDict:
        """The ``/context`` response body: the event, its neighbours, tokens and the state after the last."""
        user_id = requester.user_id
        event, access = await self._visible_event(user_id, room_id, event_id)
        if limit is None:
            limit = DEFAULT_CONTEXT_LIMIT
        limit = min(limit, MAX_CONTEXT_LIMIT)
        before_limit = limit // 2
        after_limit = limit - before_limit
        read_limit = await self._access.read_limit(access)

        before = await self._walker.walk(
            user_id, room_id, from_position=position_after(event, "b"), to_position=None, direction="b",
            limit=before_limit, event_filter=event_filter, is_peeking=access.is_peeking,
        )
        after = await self._walker.walk(
            user_id, room_id, from_position=position_after(event, "f"), to_position=read_limit, direction="f",
            limit=after_limit, event_filter=event_filter, is_peeking=access.is_peeking,
        )
        oldest = before.events[-1] if before.events else event
        newest = after.events[-1] if after.events else event
        state = await self._state_at(newest, event_filter, [event, *before.events, *after.events])
        return {
            "event": await self._serializer.serialize_event(event, requester),
            "events_before": await self._serializer.serialize_events(before.events, requester),
            "events_after": await self._serializer.serialize_events(after.events, requester),
            "start": position_token(position_after(oldest, "b")),
            "end": position_token(position_after(newest, "f")),
            "state": await self._serializer.serialize_events(state, requester),
        }

    async def _state_at(self, at: Event, event_filter: EventFilter, shown: list[Event]) -> list[Event]:
        """The state after ``at`` through the filter; with lazy loading, only the shown senders' members."""
        state_ids = await self._state.get_state_ids_for_event(at.event_id)
        if state_ids is None:
            return []
        senders = {e.sender for e in shown}
        wanted = [
            eid for (etype, skey), eid in sorted(state_ids.items())
            if event_filter.allows_type(etype)
            and not (event_filter.lazy_load_members and etype == "m.room.member" and skey not in senders)
        ]
        return event_filter.filter(await self._events.get_events_as_list(wanted))
