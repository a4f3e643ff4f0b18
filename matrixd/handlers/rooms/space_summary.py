"""A room as the two ``/hierarchy`` endpoints describe it: its summary and its ``m.space.child`` state.

Shared by the federation answer (``matrixd.federation.inbound_queries.SpaceHierarchy``) and the
client-server walk (``matrixd.handlers.rooms.hierarchy.SpaceHierarchyHandler``), so both describe
a room with the same fields (the spec's ``room_summary.yaml`` plus ``children_state``).
"""

from __future__ import annotations

from typing import Any, Optional

from matrixd.events.event import Event
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.rooms import RoomStore
from matrixd.types import JsonDict

SPACE_CHILD = "m.space.child"
#: Join rules under which anyone may join or knock without further conditions.
JOINABLE_RULES = frozenset({"public", "knock", "knock_restricted"})


def valid_child_event(content: Any, suggested_only: bool) -> bool:
    """Whether an ``m.space.child`` content makes a child: a non-empty ``via`` of strings (and ``suggested``)."""
    if not isinstance(content, dict):
        return False
    via = content.get("via")
    if not isinstance(via, list) or not via or not all(isinstance(v, str) for v in via):
        return False  # no via: the child relation was removed
    return not suggested_only or content.get("suggested") is True


def stripped_child(event: Event) -> JsonDict:
    """An ``m.space.child`` event as a stripped state event with its ``origin_server_ts``."""
    return {"type": event.type, "state_key": event.state_key, "content": dict(event.content), "sender": event.sender,
            "origin_server_ts": event.origin_server_ts}


class SpaceRoomSummaries:
    """Summaries of rooms this server is in, from their current state."""

    def __init__(self, *, rooms: RoomStore, events: EventStore, current_state: CurrentStateStore) -> None:
        self._rooms = rooms
        self._events = events
        self._current = current_state

    async def is_known(self, room_id: str) -> bool:
        """Whether we can describe the room: we know it and still have a joined member in it."""
        return await self._rooms.get_room(room_id) is not None and bool(await self._current.get_users_in_room(room_id))

    async def state_content(self, room_id: str, event_type: str) -> JsonDict:
        event = await self._current.get_current_state_event(room_id, event_type, "")
        return dict(event.content) if event is not None else {}

    async def is_world_readable(self, room_id: str) -> bool:
        content = await self.state_content(room_id, "m.room.history_visibility")
        return content.get("history_visibility") == "world_readable"

    async def join_rule(self, room_id: str) -> Optional[str]:
        rule = (await self.state_content(room_id, "m.room.join_rules")).get("join_rule")
        return rule if isinstance(rule, str) else None

    async def children_state(self, room_id: str, suggested_only: bool) -> list[Event]:
        """The room's valid ``m.space.child`` events, sorted by state key."""
        state = await self._current.get_current_state_ids(room_id)
        ids = [eid for (etype, _sk), eid in sorted(state.items()) if etype == SPACE_CHILD]
        found = await self._events.get_events(ids)
        return [found[eid] for eid in ids if eid in found and valid_child_event(found[eid].content, suggested_only)]

    async def summary(self, room_id: str, *, suggested_only: bool = False) -> JsonDict:
        """The room's summary with its ``children_state`` (only suggested children if ``suggested_only``)."""
        create = await self.state_content(room_id, "m.room.create")
        join_rules = await self.state_content(room_id, "m.room.join_rules")
        info = await self._rooms.get_room(room_id)
        summary: JsonDict = {
            "room_id": room_id,
            "num_joined_members": len(await self._current.get_users_in_room(room_id)),
            "world_readable": await self.is_world_readable(room_id),
            "guest_can_join": (await self.state_content(room_id, "m.room.guest_access")).get("guest_access")
            == "can_join",
            "join_rule": join_rules.get("join_rule", "invite"),
        }
        if info is not None:
            summary["room_version"] = info.room_version
        optional: list[tuple[str, str, str]] = [
            ("name", "m.room.name", "name"), ("topic", "m.room.topic", "topic"),
            ("avatar_url", "m.room.avatar", "url"), ("canonical_alias", "m.room.canonical_alias", "alias"),
            ("encryption", "m.room.encryption", "algorithm"),
        ]
        for field, event_type, key in optional:
            value: Any = (await self.state_content(room_id, event_type)).get(key)
            if isinstance(value, str) and value:
                summary[field] = value
        room_type: Optional[Any] = create.get("type")
        if isinstance(room_type, str):
            summary["room_type"] = room_type
        allow = join_rules.get("allow")
        if isinstance(allow, list):
            summary["allowed_room_ids"] = sorted({a["room_id"] for a in allow if isinstance(a, dict)
                                                  and a.get("type") == "m.room_membership"
                                                  and isinstance(a.get("room_id"), str)})
        summary["children_state"] = [stripped_child(e) for e in await self.children_state(room_id, suggested_only)]
        return summary
