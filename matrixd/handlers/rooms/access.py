"""Who may read a room's events and state, and up to where.

* a joined user reads the room as it is now;
* a user who left (or was kicked or banned) reads it as it was when they
  left: state at their leave event, timeline up to it;
* anyone else reads it only while its history is ``world_readable`` (peeking);
* everybody else gets 403 ``M_FORBIDDEN``.

Which individual events are visible is then up to
:class:`matrixd.handlers.visibility.VisibilityFilter`.
"""

from __future__ import annotations

from typing import Optional

import attrs

from matrixd.api.errors import AuthError
from matrixd.events.event import StateMap
from matrixd.handlers.visibility import HISTORY_VISIBILITY, WORLD_READABLE, visibility_of
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.models import TopologicalPosition
from matrixd.storage.state import StateGroupStore

JOIN, LEAVE, BAN = "join", "leave", "ban"


@attrs.frozen(slots=True)
class RoomReadAccess:
    """How a user may read a room.

    Attributes:
        room_id: the room.
        membership: the user's current membership (None if they never had one).
        left_event_id: for a departed user, the member event that ended their
            membership; reads stop there.
        is_peeking: the user is not a member and reads a world_readable room.
    """

    room_id: str
    membership: Optional[str]
    left_event_id: Optional[str] = None
    is_peeking: bool = False

    @property
    def is_joined(self) -> bool:
        return self.membership == JOIN


class RoomAccessChecker:
    def __init__(self, *, events: EventStore, state: StateGroupStore, current_state: CurrentStateStore) -> None:
        self._events = events
        self._state = state
        self._current = current_state

    async def check_can_read(self, user_id: str, room_id: str, *, allow_departed: bool = True) -> RoomReadAccess:
        """How ``user_id`` may read ``room_id``; 403 if they may not at all (unknown rooms included)."""
        membership = await self._current.get_membership(room_id, user_id)
        if membership is not None:
            if membership.membership == JOIN:
                return RoomReadAccess(room_id, JOIN)
            if membership.membership in (LEAVE, BAN) and allow_departed:
                return RoomReadAccess(room_id, membership.membership, left_event_id=membership.event_id)
        if await self.is_world_readable(room_id):
            return RoomReadAccess(room_id, membership.membership if membership else None, is_peeking=True)
        raise AuthError(403, f"User {user_id} is not in room {room_id} and the room is not world readable")

    async def check_joined(self, user_id: str, room_id: str) -> None:
        """403 unless ``user_id`` is joined to ``room_id`` now."""
        membership = await self._current.get_membership(room_id, user_id)
        if membership is None or membership.membership != JOIN:
            raise AuthError(403, f"User {user_id} is not in room {room_id}")

    async def is_world_readable(self, room_id: str) -> bool:
        event = await self._current.get_current_state_event(room_id, HISTORY_VISIBILITY, "")
        return event is not None and visibility_of(event.content) == WORLD_READABLE

    async def state_ids_for_reader(self, access: RoomReadAccess) -> StateMap:
        """The room state the reader sees: now, or after their leave event."""
        if access.left_event_id is not None:
            state = await self._state.get_state_ids_for_event(access.left_event_id)
            if state is not None:
                return state
        return await self._current.get_current_state_ids(access.room_id)

    async def read_limit(self, access: RoomReadAccess) -> Optional[TopologicalPosition]:
        """The last timeline position the reader may see (their leave event), None if unbounded."""
        if access.left_event_id is None:
            return None
        return await self._events.get_topological_position(access.left_event_id)
