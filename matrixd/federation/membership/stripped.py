"""Stripped room state: what invitees and knockers see of a room they are not in."""

from __future__ import annotations

from typing import Any, Optional

from matrixd.events.event import StateKey
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore

STRIPPED_STATE_TYPES = (
    "m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.canonical_alias",
    "m.room.encryption", "m.room.topic",
)


async def stripped_state(events: EventStore, current_state: CurrentStateStore, room_id: str,
                         member: Optional[str] = None) -> list[dict[str, Any]]:
    """``[{type, state_key, content, sender}]`` of the room's current state (and ``member``'s event)."""
    state = await current_state.get_current_state_ids(room_id)
    keys: list[StateKey] = [(t, "") for t in STRIPPED_STATE_TYPES]
    if member is not None:
        keys.append(("m.room.member", member))
    wanted = [state[k] for k in keys if k in state]
    found = await events.get_events(wanted)
    return [
        {"type": ev.type, "state_key": ev.state_key, "content": ev.content, "sender": ev.sender}
        for ev in (found[i] for i in wanted if i in found)
    ]
