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
    auth_keys: Optional[dict[str, list[StateKey]]] = None,
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
    event: ``state`` itself is never copied. ``auth_keys`` caches the rules'
    auth types per event id across calls.
    """
    events = graph.events
    parents = graph.parents
    auth_types = rules.auth_types_for_event
    check = rules.check_state_dependent
    if auth_keys is None:
        auth_keys = {}
    auth_keys_get = auth_keys.get
    state_get = state.get
    events_get = events.get

    def own_auth_events(ev: Event) -> dict[StateKey, Event]:
        # The event's own non-rejected auth events, for the keys the state lacks.
        own: dict[StateKey, Event] = {}
        for aid in parents(ev.event_id):
            a = events_get(aid)
            if a is not None and a.internal_metadata.rejected_reason is None:
                skey = a.state_key
                if skey is not None:
                    own[(a.type, skey)] = a
        if create_event is not None and CREATE_KEY not in own:
            own[CREATE_KEY] = create_event
        return own

    for n, eid in enumerate(event_ids, 1):
        ev = events_get(eid)
        if ev is None or ev.internal_metadata.rejected_reason is not None:
            continue
        state_key = ev.state_key
        if state_key is None:
            continue
        auth_state: dict[StateKey, Event] = {}
        own: Optional[dict[StateKey, Event]] = None
        keys = auth_keys_get(eid)
        if keys is None:
            keys = auth_keys[eid] = list(auth_types(room_version, ev))
        for key in keys:
            sid = state_get(key)
            found = events_get(sid) if sid is not None else None
            if found is None or found.internal_metadata.rejected_reason is not None:
                if own is None:
                    own = own_auth_events(ev)
                found = own.get(key)
            if found is not None:
                auth_state[key] = found
        if CREATE_KEY not in auth_state:
            sid = state_get(CREATE_KEY)
            found = events_get(sid) if sid is not None else None
            if found is None or found.internal_metadata.rejected_reason is not None:
                if own is None:
                    own = own_auth_events(ev)
                found = own.get(CREATE_KEY)
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
