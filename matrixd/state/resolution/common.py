"""Shared definitions for every state resolution algorithm.

The auth rules are not implemented here: they are injected as an
:class:`AuthRules` bundle (by default the functions of
``matrixd.state.auth``, imported lazily) so the resolver can be tested and
benchmarked against any implementation of the rules with the same contract.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

import attrs

from matrixd.events.event import Event, StateKey
from matrixd.events.room_versions import RoomVersion

CREATE_KEY: StateKey = ("m.room.create", "")
POWER_KEY: StateKey = ("m.room.power_levels", "")
JOIN_RULES_KEY: StateKey = ("m.room.join_rules", "")

PowerLevel = Union[int, float]  # float only for the infinite power of v12 creators


@attrs.frozen(slots=True)
class AuthRules:
    """The three auth-rule functions state resolution needs.

    Attributes:
        auth_types_for_event: the ``(type, state_key)`` keys the rules read to
            authorise an event (the auth events selection).
        check_state_dependent: raises ``AuthError`` if the event is not allowed
            given ``auth_state`` (a map from key to event).
        user_power_level: the power level of a user given an auth state holding
            (at least) the power levels and create events. Results are cached by
            ``(user, power levels id, create id)``, so it must read nothing else.
    """

    auth_types_for_event: Callable[[RoomVersion, Event], Iterable[StateKey]]
    check_state_dependent: Callable[[RoomVersion, Event, Mapping[StateKey, Event]], None]
    user_power_level: Callable[[RoomVersion, str, Mapping[StateKey, Event]], PowerLevel]


def default_auth_rules() -> AuthRules:
    """The auth rules of ``matrixd.state.auth``, imported on first use."""
    from matrixd.state import auth  # noqa: PLC0415 - lazy: the auth package is optional at import time

    return AuthRules(
        auth_types_for_event=auth.auth_types_for_event,
        check_state_dependent=auth.check_state_dependent_auth_rules,
        user_power_level=auth.get_user_power_level,
    )


def is_power_event(event: Event) -> bool:
    """A state event that may take an ability away from someone (spec: "power events").

    Power levels and join rules events of any state key, and ``leave``/``ban``
    memberships sent by someone other than their target (kicks and bans).
    """
    etype = event.type
    if etype == "m.room.power_levels" or etype == "m.room.join_rules":
        return event.state_key is not None
    if etype == "m.room.member":
        state_key = event.state_key
        return state_key is not None and event.sender != state_key and event.membership in ("leave", "ban")
    return False


def create_event_id_for_room(room_version: RoomVersion, room_id: str) -> Optional[str]:
    """The create event id implied by a v12+ room id (``!x`` -> ``$x``), else None."""
    if room_version.room_id_is_create_event_hash and room_id.startswith("!"):
        return "$" + room_id[1:]
    return None


def split_state(state_sets: Sequence[Mapping[StateKey, str]]) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """Split state sets into the unconflicted state map and the conflicted events per key (v2, v2.1).

    A key is unconflicted only if it is present in *every* set with the same
    event id; a key missing from one set is conflicted, and its conflicted
    events are the distinct ids present.
    """
    if not state_sets:
        return {}, {}
    if len(state_sets) == 2:
        return _split_two(state_sets[0], state_sets[1])
    unconflicted = dict(state_sets[0])
    for s in state_sets[1:]:
        get = s.get
        unconflicted = {k: e for k, e in unconflicted.items() if get(k) == e}
    conflicted: dict[StateKey, set[str]] = {}
    for s in state_sets:
        if len(s) == len(unconflicted):
            continue  # every pair of s is unconflicted
        for key, eid in s.items():
            if key not in unconflicted:
                ids = conflicted.get(key)
                if ids is None:
                    conflicted[key] = {eid}
                else:
                    ids.add(eid)
    return unconflicted, conflicted


def _split_two(
    first: Mapping[StateKey, str], second: Mapping[StateKey, str]
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """:func:`split_state` of two sets in one pass (the common case of two forks)."""
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    get = second.get
    shared_keys = 0
    for key, eid in first.items():
        other = get(key)
        if other == eid:
            unconflicted[key] = eid
            shared_keys += 1
        elif other is None:
            conflicted[key] = {eid}
        else:
            conflicted[key] = {eid, other}
            shared_keys += 1
    if len(second) > shared_keys:
        for key in second.keys() - first.keys():
            conflicted[key] = {second[key]}
    return unconflicted, conflicted


def split_state_v1(
    state_sets: Sequence[Mapping[StateKey, str]],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """Split state sets the room-version-1 way: a conflict needs two *different* event ids.

    A key present in only some of the sets, always with the same id, is
    unconflicted.
    """
    seen: dict[StateKey, set[str]] = {}
    for s in state_sets:
        for key, eid in s.items():
            ids = seen.get(key)
            if ids is None:
                seen[key] = {eid}
            else:
                ids.add(eid)
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    for key, ids in seen.items():
        if len(ids) == 1:
            (unconflicted[key],) = ids
        else:
            conflicted[key] = ids
    return unconflicted, conflicted
