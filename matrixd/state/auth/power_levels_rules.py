"""The ``m.room.power_levels`` rule: what a new power levels event may contain and change.

Shape checks first (rooms v10+ demand integers everywhere; before that only
``users`` is checked, and strings holding integers are accepted; rooms v1-v5
additionally refuse non-finite floats), then the v12 rule that room creators
never appear in ``users``, then the comparison with the previous event: a
sender may only touch levels that are, before and after, within their own
power.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from matrixd.api.errors import AuthError
from matrixd.events.event import Event
from matrixd.events.room_versions import RoomVersion
from matrixd.state.auth.identifiers import is_valid_user_id
from matrixd.state.auth.levels import Level, get_room_creators, parse_level

NAMED_KEYS = ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite")


def check_power_levels_event(
    room_version: RoomVersion,
    event: Event,
    sender_level: Level,
    previous_content: Optional[Mapping[str, Any]],
    create_event: Event,
) -> None:
    """Raise AuthError unless ``event`` is an allowed power levels change.

    ``previous_content`` is the content of the power levels event in the state
    before ``event`` (None if there is none); ``sender_level`` the sender's
    level in that state.
    """
    content = event.content
    _check_shape(room_version, content)
    if room_version.privileged_creators:
        users = content.get("users")
        if isinstance(users, dict):
            for creator in get_room_creators(room_version, create_event):
                if creator in users:
                    raise AuthError(403, f"power levels may not list room creator {creator} in users")
    if previous_content is None:
        return

    sender = event.sender
    for key in NAMED_KEYS:
        old = _level(room_version, previous_content, key)
        new = _level(room_version, content, key)
        if old == new:
            continue
        if old is not None and old > sender_level:
            raise AuthError(403, f"cannot change {key} from {old}: above sender's level {sender_level}")
        if new is not None and new > sender_level:
            raise AuthError(403, f"cannot set {key} to {new}: above sender's level {sender_level}")

    maps = ["events", "notifications"] if room_version.limit_notifications_power_levels else ["events"]
    for name in maps:
        old_map = _mapping(previous_content, name)
        new_map = _mapping(content, name)
        for key, old, new in _changes(room_version, old_map, new_map):
            if old is not None and old > sender_level:
                raise AuthError(
                    403, f"cannot change {name}[{key!r}] from {old}: above sender's level {sender_level}"
                )
            if new is not None and new > sender_level:
                raise AuthError(403, f"cannot set {name}[{key!r}] to {new}: above sender's level {sender_level}")

    for user_id, old, new in _changes(room_version, _mapping(previous_content, "users"), _mapping(content, "users")):
        if old is not None and user_id != sender and old >= sender_level:
            raise AuthError(
                403, f"cannot change the level of {user_id} ({old}): not below sender's level {sender_level}"
            )
        if new is not None and new > sender_level:
            raise AuthError(403, f"cannot give {user_id} level {new}: above sender's level {sender_level}")


# Contents that passed _check_shape, by identity: state resolution re-checks the
# same power levels events many times, and validating a ``users`` map of
# thousands of entries dominates the rule.  Events are immutable by contract and
# the cache holds a reference to each content, so an id is never reused while
# it is cached.
_SHAPE_CACHE_SIZE = 512
_valid_shapes: dict[tuple[int, str], Mapping[str, Any]] = {}


def _check_shape(room_version: RoomVersion, content: Mapping[str, Any]) -> None:
    key = (id(content), room_version.identifier)
    if _valid_shapes.get(key) is content:
        return
    _check_shape_uncached(room_version, content)
    if len(_valid_shapes) >= _SHAPE_CACHE_SIZE:
        _valid_shapes.clear()
    _valid_shapes[key] = content


def _check_shape_uncached(room_version: RoomVersion, content: Mapping[str, Any]) -> None:
    if room_version.enforce_int_power_levels:
        for key in NAMED_KEYS:
            if key in content and type(content[key]) is not int:
                raise AuthError(403, f"power levels {key} must be an integer")
        for name in ("events", "notifications"):
            if name in content:
                value = content[name]
                if not isinstance(value, dict) or any(type(v) is not int for v in value.values()):
                    raise AuthError(403, f"power levels {name} must be an object of integers")
    elif not room_version.strict_canonicaljson:
        _refuse_non_finite_floats(content)

    if "users" not in content:
        return
    users = content["users"]
    if not isinstance(users, dict):
        raise AuthError(403, "power levels users must be an object")
    for user_id, value in users.items():
        if not is_valid_user_id(user_id):
            raise AuthError(403, f"power levels users has an invalid user id: {user_id!r}")
        if parse_level(room_version, value) is None:
            raise AuthError(403, f"power levels users[{user_id!r}] is not an integer: {value!r}")


def _refuse_non_finite_floats(content: Mapping[str, Any]) -> None:
    """Rooms v1-v5: Infinity, -Infinity, NaN (and overflowing numbers) reject the event."""
    values: list[object] = [content.get(key) for key in NAMED_KEYS]
    for name in ("events", "notifications", "users"):
        nested = content.get(name)
        if isinstance(nested, dict):
            values.extend(nested.values())
    for value in values:
        if isinstance(value, float) and not math.isfinite(value):
            raise AuthError(403, f"power levels may not hold non-finite number {value!r}")


def _level(room_version: RoomVersion, mapping: Mapping[str, Any], key: str) -> Optional[int]:
    """The level at ``key``, or None when it is absent (or unreadable, which counts as absent)."""
    if key not in mapping:
        return None
    return parse_level(room_version, mapping[key])


def _mapping(content: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = content.get(name)
    return value if isinstance(value, dict) else {}


def _changes(
    room_version: RoomVersion, old_map: Mapping[str, Any], new_map: Mapping[str, Any]
) -> list[tuple[str, Optional[int], Optional[int]]]:
    """``(key, old, new)`` for each entry added, changed or removed (None = absent)."""
    changes: list[tuple[str, Optional[int], Optional[int]]] = []
    for key, raw in old_map.items():
        if key in new_map:
            new_raw = new_map[key]
            if new_raw == raw and type(new_raw) is type(raw):  # the usual case: untouched
                continue
        old = parse_level(room_version, raw)
        new = _level(room_version, new_map, key)
        if old != new:
            changes.append((key, old, new))
    for key, raw in new_map.items():
        if key not in old_map:
            new = parse_level(room_version, raw)
            if new is not None:
                changes.append((key, None, new))
    return changes
