"""Member lists: ``/members`` (member events, at a point in time), ``/joined_members``, ``/joined_rooms``."""

from __future__ import annotations

from typing import Awaitable, Callable, Optional

from matrixd.api.errors import Codes, MatrixError

from matrixd.events.event import Event, JsonDict, StateMap
from matrixd.handlers.rooms.access import RoomAccessChecker
from matrixd.handlers.rooms.serialize import ClientEventSerializer
from matrixd.handlers.rooms.timeline import TimelineWalker
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.partial_state import PartialStateStore
from matrixd.storage.state import StateGroupStore
from matrixd.types import Requester
from matrixd.util.clock import Clock

MEMBER = "m.room.member"
#: How long a member list request waits for a partial-state room's full state before giving up.
PARTIAL_STATE_WAIT = 60.0

#: ``(room_id, timeout) -> whether the room's full state is known`` (waiting at most ``timeout`` seconds).
FullStateWaiter = Callable[[str, float], Awaitable[bool]]


def membership_matches(membership: Optional[str], wanted: Optional[str], unwanted: Optional[str]) -> bool:
    """The spec's rule for ``membership`` / ``not_membership``: given both, either one may hold."""
    if wanted is None and unwanted is None:
        return True
    if wanted is not None and membership == wanted:
        return True
    return unwanted is not None and membership != unwanted


async def wait_for_full_state(waiter: Optional[FullStateWaiter], room_id: str) -> None:
    """Wait for a partial-state room's full state (bounded); 503 if it is still not known then."""
    if waiter is not None and not await waiter(room_id, PARTIAL_STATE_WAIT):
        raise MatrixError(503, "The room's member list is still being fetched from other servers; retry later",
                          Codes.UNKNOWN)


def polling_full_state_waiter(store: PartialStateStore, clock: Clock, interval: float = 0.5) -> FullStateWaiter:
    """A waiter for processes that do not run the resync (workers): poll the partial-state mark."""

    async def wait(room_id: str, timeout: float) -> bool:
        deadline = clock.time() + timeout
        while await store.is_partial(room_id):
            if clock.time() >= deadline:
                return False
            await clock.sleep(interval)
        return True

    return wait


class RoomMembersHandler:
    def __init__(
        self,
        *,
        access: RoomAccessChecker,
        walker: TimelineWalker,
        events: EventStore,
        state: StateGroupStore,
        current_state: CurrentStateStore,
        serializer: ClientEventSerializer,
    ) -> None:
        self._access = access
        self._walker = walker
        self._events = events
        self._state = state
        self._current = current_state
        self._serializer = serializer
        self._full_state: Optional[FullStateWaiter] = None

    def set_full_state_waiter(self, waiter: FullStateWaiter) -> None:
        """Member lists of a room joined with partial state wait for its resync (they would be incomplete)."""
        self._full_state = waiter

    async def _wait_for_members(self, room_id: str) -> None:
        await wait_for_full_state(self._full_state, room_id)

    async def get_members(
        self,
        requester: Requester,
        room_id: str,
        *,
        at: Optional[str] = None,
        membership: Optional[str] = None,
        not_membership: Optional[str] = None,
    ) -> list[JsonDict]:
        """Member events of the room now (or when the user left, or at the ``at`` token), filtered."""
        access = await self._access.check_can_read(requester.user_id, room_id)
        await self._wait_for_members(room_id)
        if at is not None:
            position = await self._walker.resolve_token(room_id, at)
            read_limit = await self._access.read_limit(access)
            if read_limit is not None and position > read_limit:
                position = read_limit
            state = await self._state_at_position(room_id, position)
        else:
            state = await self._access.state_ids_for_reader(access)
        ids = [eid for (etype, _), eid in sorted(state.items()) if etype == MEMBER]
        events: list[Event] = await self._events.get_events_as_list(ids)
        chosen = [e for e in events if membership_matches(e.membership, membership, not_membership)]
        return await self._serializer.serialize_events(chosen, requester)

    async def _state_at_position(self, room_id: str, position: tuple[int, int]) -> StateMap:
        """The state after the latest timeline event at or before ``position`` (empty before the room)."""
        latest = await self._events.get_room_events_topological(room_id, position, None, 1, "b")
        if not latest:
            return {}
        state = await self._state.get_state_ids_for_event(latest[0].event_id)
        return state if state is not None else {}

    async def get_joined_members(self, requester: Requester, room_id: str) -> JsonDict:
        """``{user_id: {display_name, avatar_url}}`` of the joined members; the requester must be joined."""
        await self._access.check_joined(requester.user_id, room_id)
        await self._wait_for_members(room_id)
        profiles = await self._current.get_joined_member_profiles(room_id)
        joined: JsonDict = {}
        for user_id in sorted(profiles):
            profile = profiles[user_id]
            entry: JsonDict = {}
            if profile.displayname is not None:
                entry["display_name"] = profile.displayname
            if profile.avatar_url is not None:
                entry["avatar_url"] = profile.avatar_url
            joined[user_id] = entry
        return joined

    async def get_joined_rooms(self, requester: Requester) -> list[str]:
        """The rooms the requester is joined to, sorted."""
        return sorted(await self._current.get_rooms_for_user(requester.user_id))
