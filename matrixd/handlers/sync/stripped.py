"""Stripped state for invites and knocks: enough of a room to show it before joining."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from matrixd.events.event import Event
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.types import JsonDict

#: The state types the spec lists for stripped state ("Stripped state").
STRIPPED_STATE_TYPES = (
    "m.room.create",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.join_rules",
    "m.room.canonical_alias",
    "m.room.encryption",
)


def strip_event(event: Event) -> JsonDict:
    return {"type": event.type, "state_key": event.state_key, "content": event.content, "sender": event.sender}


def _valid_stripped(raw: Any) -> Optional[list[JsonDict]]:
    """A remote server's ``invite_room_state``/``knock_room_state``, keeping only well-formed entries."""
    if not isinstance(raw, list):
        return None
    out = []
    for ev in raw:
        if (
            isinstance(ev, dict)
            and isinstance(ev.get("type"), str)
            and isinstance(ev.get("state_key"), str)
            and isinstance(ev.get("content"), dict)
            and isinstance(ev.get("sender"), str)
        ):
            out.append({k: ev[k] for k in ("type", "state_key", "content", "sender")})
    return out


async def stripped_state_for(
    events: EventStore, current_state: CurrentStateStore, member_events: Mapping[str, Event], unsigned_key: str
) -> dict[str, list[JsonDict]]:
    """``{room_id: stripped state}`` for invite (or knock) member events, one per room.

    A remote invite carries the inviting server's view in
    ``unsigned.<unsigned_key>``; otherwise the room's current state here is
    used.  The member event itself always comes last.
    """
    out: dict[str, list[JsonDict]] = {}
    local_rooms = []
    for room_id, member in member_events.items():
        given = _valid_stripped(member.unsigned.get(unsigned_key))
        if given is not None:
            out[room_id] = given
        else:
            local_rooms.append(room_id)
    if local_rooms:
        ids = await current_state.get_current_state_ids_of_types(local_rooms, STRIPPED_STATE_TYPES)
        senders: dict[str, str] = {}
        for room_id in local_rooms:
            member = member_events[room_id]
            if member.sender != member.state_key:
                sender_member = await current_state.get_current_state_event_id(
                    room_id, "m.room.member", member.sender
                )
                if sender_member is not None:
                    senders[room_id] = sender_member
        loaded = await events.get_events([*(e for m in ids.values() for e in m.values()), *senders.values()])
        for room_id in local_rooms:
            state = [
                strip_event(loaded[eid])
                for key, eid in sorted(ids.get(room_id, {}).items())
                if eid in loaded
            ]
            if room_id in senders and senders[room_id] in loaded:
                state.append(strip_event(loaded[senders[room_id]]))
            out[room_id] = state
    for room_id, member in member_events.items():
        out[room_id] = [*out[room_id], strip_event(member)]
    return out
