"""State resolution for room version 1, as the spec words it (``content/rooms/v1.md``).

Starting from the union of the unconflicted state R, conflicts are resolved
in passes: power levels, then join rules, then memberships (each key of a
pass resolved against R as it was when the pass began), each by sorting the candidates by ascending depth
then descending sha1(event id), taking the first, and then applying each
following one that the auth rules allow in R, stopping at the first that
they refuse. Every other conflicted key gets the candidate with the highest
depth and lowest sha1(event id) that the auth rules allow in R, or, if none is
allowed, the last candidate in that order. These readings of the ambiguous v1
text are the ones the deployed network follows (checked by differential tests). The auth
state is read from R alone (no fallback to an event's own auth events).

As in v2 (see ``v2``), rejected events are never chosen for a conflicted key
and never used in an auth state; the v1 text does not mention them because
they should not appear in any state.
"""

from __future__ import annotations

import hashlib
from typing import Mapping, Optional

from matrixd.api.errors import AuthError
from matrixd.events.event import Event, StateKey
from matrixd.events.room_versions import RoomVersion
from matrixd.state.resolution.common import CREATE_KEY, AuthRules

_AUTH_TYPES_ORDER = ("m.room.power_levels", "m.room.join_rules", "m.room.member")


def _sha1(event_id: str) -> bytes:
    return hashlib.sha1(event_id.encode("utf-8")).digest()


def _allowed(room_version: RoomVersion, ev: Event, r: Mapping[StateKey, str], events: Mapping[str, Event], rules: AuthRules) -> bool:
    auth_state: dict[StateKey, Event] = {}
    keys = list(rules.auth_types_for_event(room_version, ev))
    if CREATE_KEY not in keys:
        keys.append(CREATE_KEY)
    for key in keys:
        sid = r.get(key)
        found = events.get(sid) if sid is not None else None
        if found is not None and not found.rejected:
            auth_state[key] = found
    try:
        rules.check_state_dependent(room_version, ev, auth_state)
    except AuthError:
        return False
    return True


def resolve_v1(
    room_version: RoomVersion,
    events: Mapping[str, Event],
    unconflicted: Mapping[StateKey, str],
    conflicted: Mapping[StateKey, set[str]],
    rules: AuthRules,
) -> dict[StateKey, str]:
    """Resolve with the room version 1 algorithm; ``events`` must hold the conflicted events and
    the unconflicted events the auth rules read. Conflicted events that are not loaded are ignored."""
    r: dict[StateKey, str] = dict(unconflicted)
    candidates: dict[StateKey, list[Event]] = {}
    for key, ids in conflicted.items():
        evs = [events[i] for i in ids if i in events and not events[i].rejected]
        if evs:
            candidates[key] = evs
    for etype in _AUTH_TYPES_ORDER:
        # Each key of a pass is resolved against R as it stood when the pass began
        # (plus that key's own progress); the pass's results are applied together.
        base = dict(r)
        results: dict[StateKey, str] = {}
        for key in sorted(k for k in candidates if k[0] == etype):
            # Ascending depth, then descending sha1: sort by the secondary key first (stable sort).
            evs = sorted(candidates[key], key=lambda e: _sha1(e.event_id), reverse=True)
            evs.sort(key=lambda e: e.depth)
            view = dict(base)
            view[key] = evs[0].event_id
            for ev in evs[1:]:
                if not _allowed(room_version, ev, view, events, rules):
                    break
                view[key] = ev.event_id
            results[key] = view[key]
        r.update(results)
    for key in sorted(k for k in candidates if k[0] not in _AUTH_TYPES_ORDER):
        # Highest depth first, then lowest sha1.
        evs = sorted(candidates[key], key=lambda e: (-e.depth, _sha1(e.event_id)))
        chosen: Optional[Event] = None
        for ev in evs:
            if _allowed(room_version, ev, r, events, rules):
                chosen = ev
                break
        # When no candidate passes, the last in this order (lowest depth, highest sha1) stands.
        r[key] = (chosen if chosen is not None else evs[-1]).event_id
    return r
