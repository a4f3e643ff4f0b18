"""State resolution v2 (room versions 2-11) and v2.1 (room version 12), in memory.

Reading notes on points the spec leaves open (see also the package docstring):

* The full auth chain of a state set includes the set's own events, so an
  event common to every state set is never in the auth difference
  (:func:`graph.auth_difference`). This is what Synapse computes; the
  spec's wording ("the union of the auth chains for each event") could be
  read as leaving the state events out.
* The reverse topological power ordering uses the direct auth edges between
  the events being sorted.
* The power level of a sender for that ordering is read from all of the
  event's auth events, rejected or not (plus the implied create event in
  v12): the spec's exclusion of rejected auth events is about the
  iterative auth checks.
* Rejected events (``internal_metadata.rejected_reason`` set; we do not
  record whether they failed against their auth events or against the state
  before them) are sorted like any other event but never applied to the
  state, and a rejected event is never used in an auth state, whether it
  comes from the partially resolved state or from the event's auth events.

* Step 1's set X takes, for each power event, every event of its auth chain
  that is in the full conflicted set, as the spec words it, even one reached
  only through events outside that set.

The first four choices agree with Synapse on randomized forks, including
forks with disagreeing rejection flags and stale auth events (see
``tests/state/test_resolution_differential.py``); no case where the fifth
would differ has come up there.
"""

from __future__ import annotations

from typing import Callable, Collection, Generator, Mapping, Optional

from matrixd.events.event import Event, StateKey
from matrixd.events.room_versions import RoomVersion, StateResAlgorithm
from matrixd.state.resolution.common import CREATE_KEY, POWER_KEY, AuthRules, PowerLevel, is_power_event
from matrixd.state.resolution.graph import (
    AuthGraph,
    conflicted_subgraph,
    power_events_with_auth_chains,
)
from matrixd.state.resolution.iterative import iter_auth_checks
from matrixd.state.resolution.ordering import mainline_order, reverse_topological_power_order


def full_conflicted_set(
    room_version: RoomVersion, graph: AuthGraph, conflicted_ids: Collection[str], auth_diff: Collection[str]
) -> set[str]:
    """Conflicted state set, auth difference and (v2.1) conflicted state subgraph, limited to loaded events."""
    full = set(conflicted_ids) | set(auth_diff)
    if room_version.state_res == StateResAlgorithm.V2_1:
        full |= conflicted_subgraph(graph, conflicted_ids)
    return {eid for eid in full if graph.get(eid) is not None}


def make_sender_power(
    room_version: RoomVersion, graph: AuthGraph, rules: AuthRules, create_event: Optional[Event]
) -> Callable[[Event], PowerLevel]:
    """The sender's power level per its own auth events (rejected ones included), cached by
    (sender, power levels id, create id)."""
    cache: dict[tuple[str, Optional[str], Optional[str]], PowerLevel] = {}
    implied_create_id = create_event.event_id if create_event is not None else None
    events = graph.events

    def sender_power(ev: Event) -> PowerLevel:
        pl_id: Optional[str] = None
        create_id = implied_create_id
        for aid in graph.parents(ev.event_id):
            a = events.get(aid)
            if a is None or a.state_key != "":
                continue
            if a.type == "m.room.power_levels":
                pl_id = aid
            elif a.type == "m.room.create":
                create_id = aid
        key = (ev.sender, pl_id, create_id)
        level = cache.get(key)
        if level is None:
            auth_state: dict[StateKey, Event] = {}
            if pl_id is not None:
                auth_state[POWER_KEY] = events[pl_id]
            create = events.get(create_id) if create_id is not None else None
            if create is not None:
                auth_state[CREATE_KEY] = create
            level = rules.user_power_level(room_version, ev.sender, auth_state)
            cache[key] = level
        return level

    return sender_power


def iter_resolve_v2(
    room_version: RoomVersion,
    graph: AuthGraph,
    unconflicted: Mapping[StateKey, str],
    conflicted_ids: Collection[str],
    auth_diff: Collection[str],
    rules: AuthRules,
    create_event: Optional[Event] = None,
    auth_keys: Optional[dict[str, list[StateKey]]] = None,
) -> Generator[None, None, dict[StateKey, str]]:
    """Run the v2 / v2.1 algorithm, yielding between slices of work; returns the resolved state.

    ``graph`` must hold the full conflicted set, the auth chains of its
    events and, for v2, the unconflicted events the auth rules will read.
    ``auth_keys`` may carry the rules' auth types already computed per event.
    """
    if auth_keys is None:
        auth_keys = {}
    full = full_conflicted_set(room_version, graph, conflicted_ids, auth_diff)
    yield None
    # Step 1: power events and their auth chains within the full conflicted set.
    power = [eid for eid in full if is_power_event(graph.events[eid])]
    x = power_events_with_auth_chains(graph, power, full)
    sender_power = make_sender_power(room_version, graph, rules, create_event)
    sorted_power = reverse_topological_power_order(graph, x, sender_power)
    yield None
    # Step 2: from the unconflicted state (v2) or from nothing (v2.1).
    state: dict[StateKey, str] = {} if room_version.state_res == StateResAlgorithm.V2_1 else dict(unconflicted)
    yield from iter_auth_checks(room_version, graph, state, sorted_power, rules, create_event, auth_keys)
    # Step 3: everything else, by mainline of the partially resolved power levels.
    rest = mainline_order(graph, full - x, state.get(POWER_KEY))
    yield None
    # Step 4.
    yield from iter_auth_checks(room_version, graph, state, rest, rules, create_event, auth_keys)
    # Step 5.
    state.update(unconflicted)
    return state


def resolve_v2(
    room_version: RoomVersion,
    graph: AuthGraph,
    unconflicted: Mapping[StateKey, str],
    conflicted_ids: Collection[str],
    auth_diff: Collection[str],
    rules: AuthRules,
    create_event: Optional[Event] = None,
) -> dict[StateKey, str]:
    """Synchronous form of :func:`iter_resolve_v2`."""
    gen = iter_resolve_v2(room_version, graph, unconflicted, conflicted_ids, auth_diff, rules, create_event)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            result: dict[StateKey, str] = done.value
            return result
