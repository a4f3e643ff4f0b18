"""The iterative auth checks of state resolution v2 and v2.1."""

from __future__ import annotations

from typing import Iterator, Mapping, MutableMapping, Optional, Sequence

from matrixd.api.errors import AuthError
from matrixd.events.event import Event, StateKey
from matrixd.events.room_versions import RoomVersion
from matrixd.state.resolution.common import CREATE_KEY, AuthRules
from matrixd.state.resolution.graph import AuthGraph

# How many events are checked between two yields of the generator form.
CHECKS_PER_SLICE = 100


def iter_auth_checks(
    room_version: RoomVersion,
    graph: AuthGraph,
    state: MutableMapping[StateKey, str],
    event_ids: Sequence[str],
    rules: AuthRules,
    create_event: Optional[Event] = None,
) -> Iterator[None]:
    """Apply each event to ``state`` (in place) if the auth rules allow it there; yields now and then.

    The auth state of an event holds, for each key the rules read, the event
    in ``state``; where ``state`` has no (loaded, non-rejected) event for a
    key, the event's own auth event for that key is used unless that auth
    event was rejected. Events flagged rejected are never applied (they keep their
    place in the ordering, so events citing them still sort after them).
    ``create_event`` is the room's create event for room versions
    where it is implied by the room id instead of listed in ``auth_events``
    (v12); it is used the same way. Only that small auth state is built per
    event: ``state`` itself is never copied.
    """
    events = graph.events
    parents = graph.parents
    auth_types = rules.auth_types_for_event
    check = rules.check_state_dependent

    def own_auth_event(ev: Event, key: StateKey) -> Optional[Event]:
        # The event's own non-rejected auth event for a key the state lacks.
        etype, skey = key
        for aid in parents(ev.event_id):
            a = events.get(aid)
            if a is not None and a.state_key == skey and a.type == etype and not a.rejected:
                return a
        if key == CREATE_KEY:
            return create_event
        return None

    state_get = state.get
    events_get = events.get

    def auth_event(ev: Event, key: StateKey) -> Optional[Event]:
        sid = state_get(key)
        if sid is not None:
            found = events_get(sid)
            if found is not None and found.internal_metadata.rejected_reason is None:
                return found
        return own_auth_event(ev, key)

    for n, eid in enumerate(event_ids, 1):
        ev = events_get(eid)
        if ev is None or ev.internal_metadata.rejected_reason is not None:
            continue
        state_key = ev.state_key
        if state_key is None:
            continue
        auth_state: dict[StateKey, Event] = {}
        for key in auth_types(room_version, ev):
            found = auth_event(ev, key)
            if found is not None:
                auth_state[key] = found
        if CREATE_KEY not in auth_state:
            found = auth_event(ev, CREATE_KEY)
            if found is not None:
                auth_state[CREATE_KEY] = found
        try:
            check(room_version, ev, auth_state)
        except AuthError:
            pass
        else:
            state[(ev.type, state_key)] = eid
        if n % CHECKS_PER_SLICE == 0:
            yield None


def iterative_auth_checks(
    room_version: RoomVersion,
    graph: AuthGraph,
    initial_state: Mapping[StateKey, str],
    event_ids: Sequence[str],
    rules: AuthRules,
    create_event: Optional[Event] = None,
) -> dict[StateKey, str]:
    """The state obtained by applying ``event_ids`` in order to a copy of ``initial_state``."""
    state = dict(initial_state)
    for _ in iter_auth_checks(room_version, graph, state, event_ids, rules, create_event):
        pass
    return state
