"""Whether a redaction may take effect on other users' events (room v3+ "Handling redactions").

From room v3 the auth rules no longer check a redaction against its target;
a server applies it if the senders' domains match or the redaction's sender
reaches the room's ``redact`` level in the state before the redaction. Local
and received redactions are both stored with that answer.
"""

from __future__ import annotations

from matrixd.events.event import Event, StateMap
from matrixd.events.room_versions import RoomVersion
from matrixd.handlers.events.state_calc import StateCalculator
from matrixd.state.auth import get_named_level, get_user_power_level


async def sender_can_redact_others(state_calc: StateCalculator, room_version: RoomVersion, event: Event,
                                   state: StateMap) -> bool:
    """Whether ``event``'s sender reaches the redact level in ``state`` (the state before it)."""
    auth_state = await state_calc.load_state_events(
        state, [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", event.sender)]
    )
    pl = auth_state.get(("m.room.power_levels", ""))
    level = get_user_power_level(room_version, event.sender, auth_state)
    return level >= get_named_level(room_version, "redact", pl.content if pl is not None else None)
