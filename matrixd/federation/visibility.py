"""What another server may see of a room's events.

A server is "in the room" when one of its users is joined in the room's
current state. Whether it may see one event follows the history visibility
rules applied to the server's users together, at the state before the event:

1. ``world_readable``: visible;
2. one of its users was joined: visible;
3. ``invited`` and one of its users was invited: visible;
4. ``shared`` and the server is in the room now (its users joined after
   the event): visible;
5. otherwise not.

As for users, an ``m.room.history_visibility`` event, and a membership event
of the server's own user, is visible if the rules allow it under the state
before *or* after it. Events without state (outliers) are visible only to
servers in the room now. Federation answers that walk the DAG (``/backfill``)
give events a server may not see in their redacted form, so the DAG stays
connected while their content stays private.
"""

from __future__ import annotations

from typing import Optional, Sequence

from matrixd.events.event import Event, StateMap
from matrixd.events.redaction import prune_event
from matrixd.storage.cache import LruCache
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.state import StateGroupStore
from matrixd.types import IdentifierError, get_domain_from_id

HISTORY_VISIBILITY = "m.room.history_visibility"
MEMBER = "m.room.member"
_KNOWN = frozenset({"world_readable", "shared", "invited", "joined"})


def domain_or_none(user_id: str) -> Optional[str]:
    try:
        return get_domain_from_id(user_id)
    except IdentifierError:
        return None


def _allowed(visibility: str, memberships: frozenset[str], in_room_now: bool) -> bool:
    if visibility == "world_readable":
        return True
    if "join" in memberships:
        return True
    if visibility == "invited" and "invite" in memberships:
        return True
    return visibility == "shared" and in_room_now


class ServerVisibility:
    def __init__(self, events: EventStore, state: StateGroupStore, current_state: CurrentStateStore) -> None:
        self._events = events
        self._state = state
        self._current_state = current_state
        # (state group, server) -> (history visibility, memberships of the server's users)
        self._facts: LruCache[tuple[int, str], tuple[str, frozenset[str]]] = LruCache("server_visibility", 50_000)
        self._hosts_by_room: LruCache[str, tuple[tuple[str, ...], frozenset[str], tuple[str, ...]]] = LruCache(
            "hosts_in_room", 10_000)

    async def get_hosts_in_room(self, room_id: str) -> list[str]:
        """Servers with a joined user in the room's current state, sorted."""
        return list((await self._hosts(room_id))[1])

    async def is_host_in_room(self, server_name: str, room_id: str) -> bool:
        return server_name in (await self._hosts(room_id))[0]

    async def _hosts(self, room_id: str) -> tuple[frozenset[str], tuple[str, ...]]:
        """The room's servers, worked out once per member list: asked for every outgoing event and
        presence or typing update, it would otherwise parse every member's id each time."""
        users = await self._current_state.get_users_in_room_tuple(room_id)
        cached = self._hosts_by_room.get(room_id)
        if cached is not None and cached[0] is users:  # the same tuple until the membership changes
            return cached[1], cached[2]
        hosts = frozenset(d for d in (domain_or_none(u) for u in users) if d is not None)
        ordered = tuple(sorted(hosts))
        self._hosts_by_room.set(room_id, (users, hosts, ordered))
        return hosts, ordered

    async def is_room_world_readable(self, room_id: str) -> bool:
        event = await self._current_state.get_current_state_event(room_id, HISTORY_VISIBILITY, "")
        return event is not None and event.content.get("history_visibility") == "world_readable"

    async def filter_events_for_server(
        self, server_name: str, events: Sequence[Event], *, redact: bool = True
    ) -> list[Event]:
        """``events`` in order, those ``server_name`` may not see redacted (or dropped if not ``redact``)."""
        if not events:
            return []
        in_room: dict[str, bool] = {}
        for room_id in {e.room_id for e in events}:
            in_room[room_id] = await self.is_host_in_room(server_name, room_id)
        ids = [e.event_id for e in events]
        before = await self._state.get_state_groups_for_events(ids, before=True)
        after = await self._state.get_state_groups_for_events(
            [e.event_id for e in events if self._both_sides(e, server_name)]
        )
        out = []
        for event in events:
            visible = await self._visible(server_name, event, in_room[event.room_id], before, after)
            if visible:
                out.append(event)
            elif redact:
                out.append(prune_event(event))
        return out

    @staticmethod
    def _both_sides(event: Event, server_name: str) -> bool:
        if event.type == HISTORY_VISIBILITY:
            return True
        return event.type == MEMBER and domain_or_none(event.state_key or "") == server_name

    async def _visible(
        self, server_name: str, event: Event, in_room_now: bool, before: dict[str, int], after: dict[str, int]
    ) -> bool:
        group = before.get(event.event_id)
        if group is None:
            return in_room_now
        visibility, memberships = await self._facts_for(group, server_name)
        if _allowed(visibility, memberships, in_room_now):
            return True
        after_group = after.get(event.event_id)
        if after_group is None:
            return False
        visibility, memberships = await self._facts_for(after_group, server_name)
        return _allowed(visibility, memberships, in_room_now)

    async def _facts_for(self, group: int, server_name: str) -> tuple[str, frozenset[str]]:
        cached = self._facts.get((group, server_name))
        if cached is not None:
            return cached
        state: StateMap = await self._state.get_state_ids_for_group(group)
        wanted = []
        vis_id = state.get((HISTORY_VISIBILITY, ""))
        if vis_id is not None:
            wanted.append(vis_id)
        member_ids = [
            eid for (etype, skey), eid in state.items()
            if etype == MEMBER and domain_or_none(skey) == server_name
        ]
        loaded = await self._events.get_events([*wanted, *member_ids])
        visibility = "shared"
        if vis_id is not None and vis_id in loaded:
            value = loaded[vis_id].content.get("history_visibility")
            if isinstance(value, str) and value in _KNOWN:
                visibility = value
        memberships = frozenset(
            str(loaded[eid].content.get("membership")) for eid in member_ids if eid in loaded
        )
        facts = (visibility, memberships)
        self._facts.set((group, server_name), facts)
        return facts
