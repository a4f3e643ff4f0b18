"""Power levels as the authorization rules read them, and helpers for handlers.

Values in ``m.room.power_levels`` are integers, but older room versions also
accept strings holding an integer (rooms v1-v9) and floats, truncated (rooms
v1-v5).  Everything here goes through :func:`parse_level`, so one place decides
what a value means for a room version; a value that cannot be read counts as
absent and the documented default applies.

With no power levels event, the defaults of the ``m.room.power_levels`` schema
apply: ``state_default`` 50, ``events_default`` 0, ``invite`` 0, ``kick``,
``ban`` and ``redact`` 50, users 0 except the room creator, who has 100 (rooms
v1-v11).  From room v12 every room creator has infinite power, with or without
a power levels event.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Optional, Union

from matrixd.events.event import Event
from matrixd.events.room_versions import RoomVersion
from matrixd.state.auth.constants import CREATE_KEY, MEMBER, POWER_LEVELS_KEY

AuthState = Mapping[tuple[str, str], Event]
Level = Union[int, float]  # float only for math.inf (v12 room creators)

NAMED_LEVEL_DEFAULTS: Mapping[str, int] = {"invite": 0, "kick": 50, "ban": 50, "redact": 50}
STATE_DEFAULT = 50
EVENTS_DEFAULT = 0
USERS_DEFAULT = 0
NOTIFICATION_DEFAULTS: Mapping[str, int] = {"room": 50}
CREATOR_LEVEL_WITHOUT_POWER_LEVELS = 100

# "optionally with any number of leading or trailing whitespace characters",
# an optional sign, then base-10 digits.  ASCII only: Python's int() would also
# take other Unicode digits and underscores, which the spec does not allow.
_INTEGER_STRING = re.compile(r"[ \t\n\r\f\v]*[+-]?[0-9]+[ \t\n\r\f\v]*")


def parse_level(room_version: RoomVersion, value: object) -> Optional[int]:
    """The integer a power level value stands for in this room version, or None.

    Booleans are not integers.  Strings are read in rooms v1-v9, floats
    (finite ones, truncated towards zero) where canonical JSON is not enforced.
    """
    if type(value) is int:
        return value
    if room_version.enforce_int_power_levels:
        return None
    if isinstance(value, str):
        if _INTEGER_STRING.fullmatch(value):
            return int(value.strip(" \t\n\r\f\v"))
        return None
    if isinstance(value, float) and not room_version.strict_canonicaljson and math.isfinite(value):
        return int(value)
    return None


def _level_in(room_version: RoomVersion, mapping: Mapping[str, Any], key: str, default: int) -> int:
    if key not in mapping:
        return default
    level = parse_level(room_version, mapping[key])
    return default if level is None else level


def get_named_level(room_version: RoomVersion, name: str, power_levels_content: Optional[Mapping[str, Any]]) -> int:
    """The *invite*, *kick*, *ban* or *redact* level (defaults 0, 50, 50, 50)."""
    default = NAMED_LEVEL_DEFAULTS[name]
    if power_levels_content is None:
        return default
    return _level_in(room_version, power_levels_content, name, default)


def get_required_level_for_event(
    room_version: RoomVersion,
    event_type: str,
    is_state: bool,
    power_levels_content: Optional[Mapping[str, Any]],
) -> int:
    """The *required power level* to send an event of this type.

    ``events[event_type]`` if set, else ``state_default`` (50) for state events
    and ``events_default`` (0) for others.
    """
    if power_levels_content is None:
        return STATE_DEFAULT if is_state else EVENTS_DEFAULT
    events = power_levels_content.get("events")
    if isinstance(events, dict) and event_type in events:
        level = parse_level(room_version, events[event_type])
        if level is not None:
            return level
    if is_state:
        return _level_in(room_version, power_levels_content, "state_default", STATE_DEFAULT)
    return _level_in(room_version, power_levels_content, "events_default", EVENTS_DEFAULT)


def get_notification_level(
    room_version: RoomVersion, key: str, power_levels_content: Optional[Mapping[str, Any]]
) -> int:
    """The level needed to trigger a notification ``key`` (``room``: 50 by default)."""
    default = NOTIFICATION_DEFAULTS.get(key, 50)
    if power_levels_content is None:
        return default
    notifications = power_levels_content.get("notifications")
    if not isinstance(notifications, dict):
        return default
    return _level_in(room_version, notifications, key, default)


def get_room_creators(room_version: RoomVersion, create_event: Optional[Event]) -> set[str]:
    """The room creators as the room version defines them.

    v12+: the create event's sender plus ``content.additional_creators``;
    v11: the sender; v1-v10: ``content.creator``.
    """
    if create_event is None:
        return set()
    if room_version.privileged_creators:
        creators = {create_event.sender}
        extra = create_event.content.get("additional_creators")
        if isinstance(extra, list):
            creators.update(u for u in extra if isinstance(u, str))
        return creators
    creator = single_creator(room_version, create_event)
    return set() if creator is None else {creator}


def single_creator(room_version: RoomVersion, create_event: Event) -> Optional[str]:
    """The creator of rooms v1-v11: ``content.creator`` before v11, the sender from v11.

    From v12 this is still who may join right after the create event.
    """
    if room_version.implicit_room_creator:
        return create_event.sender
    creator = create_event.content.get("creator")
    return creator if isinstance(creator, str) else None


def is_privileged_creator(room_version: RoomVersion, user_id: str, create_event: Optional[Event]) -> bool:
    """Whether ``user_id`` has the infinite power of a v12+ room creator."""
    if not room_version.privileged_creators or create_event is None:
        return False
    if user_id == create_event.sender:
        return True
    extra = create_event.content.get("additional_creators")
    return isinstance(extra, list) and user_id in extra


def user_level(
    room_version: RoomVersion,
    user_id: str,
    power_levels_content: Optional[Mapping[str, Any]],
    create_event: Optional[Event],
) -> Level:
    """A user's power level from already looked-up state (the hot path of the rules)."""
    if room_version.privileged_creators:
        if is_privileged_creator(room_version, user_id, create_event):
            return math.inf
        if power_levels_content is None:
            return USERS_DEFAULT
    elif power_levels_content is None:
        if create_event is not None and user_id == single_creator(room_version, create_event):
            return CREATOR_LEVEL_WITHOUT_POWER_LEVELS
        return USERS_DEFAULT
    users = power_levels_content.get("users")
    if isinstance(users, dict) and user_id in users:
        level = parse_level(room_version, users[user_id])
        if level is not None:
            return level
    return _level_in(room_version, power_levels_content, "users_default", USERS_DEFAULT)


def power_levels_content_of(auth_state: AuthState) -> Optional[Mapping[str, Any]]:
    """The content of the power levels event in ``auth_state``, or None if there is none."""
    event = auth_state.get(POWER_LEVELS_KEY)
    return None if event is None else event.content


def get_user_power_level(
    room_version: RoomVersion,
    user_id: str,
    auth_state: AuthState,
    create_event: Optional[Event] = None,
) -> Level:
    """A user's power level in ``auth_state``: ``math.inf`` for v12+ room creators.

    ``create_event`` is only consulted when ``auth_state`` has no create event
    (v12 auth states built from auth events do not list it).
    """
    create = auth_state.get(CREATE_KEY) or create_event
    return user_level(room_version, user_id, power_levels_content_of(auth_state), create)


def get_membership(auth_state: AuthState, user_id: str) -> Optional[str]:
    """``content.membership`` of the user's member event in ``auth_state``, or None."""
    event = auth_state.get((MEMBER, user_id))
    return None if event is None else event.membership


def can_send_event(
    room_version: RoomVersion,
    user_id: str,
    event_type: str,
    is_state: bool,
    auth_state: AuthState,
    create_event: Optional[Event] = None,
) -> bool:
    """Whether the user's power level reaches the required level for this event type.

    Only the power level test; membership and the other rules are left to
    :func:`~matrixd.state.auth.check_state_dependent_auth_rules`.
    """
    content = power_levels_content_of(auth_state)
    required = get_required_level_for_event(room_version, event_type, is_state, content)
    create = auth_state.get(CREATE_KEY) or create_event
    return user_level(room_version, user_id, content, create) >= required


def user_has_named_level(
    room_version: RoomVersion,
    user_id: str,
    name: str,
    auth_state: AuthState,
    create_event: Optional[Event] = None,
) -> bool:
    """Whether the user's power level reaches the *invite*/*kick*/*ban*/*redact* level."""
    content = power_levels_content_of(auth_state)
    create = auth_state.get(CREATE_KEY) or create_event
    return user_level(room_version, user_id, content, create) >= get_named_level(room_version, name, content)


def can_trigger_notification(
    room_version: RoomVersion,
    user_id: str,
    key: str,
    auth_state: AuthState,
    create_event: Optional[Event] = None,
) -> bool:
    """Whether the user may trigger notification ``key`` (e.g. ``room`` for @room)."""
    content = power_levels_content_of(auth_state)
    create = auth_state.get(CREATE_KEY) or create_event
    return user_level(room_version, user_id, content, create) >= get_notification_level(room_version, key, content)
