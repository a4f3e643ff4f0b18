"""Where Synapse 1.163 departs from the spec, so a disagreement there is not a matrixd bug.

Each check is narrow: it names the deviation only if the disagreement is
exactly that one.  ``compare.py`` ends such a room without counting a
mismatch and reports it in the "excluded" column (``--strict`` on the CLI, or
``MATRIXD_DIFF_STRICT=1`` for the tests, counts them as mismatches instead).

1. m.federate (auth rules: v1 rule 3 ... v12 rule 4).  The spec rejects an
   event in a room whose create event says ``m.federate: false`` only when the
   *sender's* server differs from the create event sender's.  Synapse also
   rejects member events whose *target* is on another server (a local
   moderator inviting or banning a remote user).

2. Step 1 of state resolution v2/v2.1 (rooms/v2.md and v12.md, "Algorithm"):
   "For each such power event P, enlarge X by adding the events in the auth
   chain of P which also belong to the full conflicted set."  Synapse only
   follows auth edges *through* events of the full conflicted set, so an event
   of the full conflicted set reached only via an event outside it (e.g. a
   conflicted membership that is an ancestor of an unconflicted one) stays out
   of X and is sorted by the mainline instead.  The check re-runs matrixd's
   algorithm, assembled from its public pieces, with X built Synapse's way; if
   that reproduces Synapse's answer, the disagreement is this deviation.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

from matrixd.events.event import Event, StateKey
from matrixd.events.room_versions import StateResAlgorithm
from matrixd.state.resolution import (
    POWER_KEY,
    AuthGraph,
    auth_difference,
    default_auth_rules,
    full_conflicted_set,
    is_power_event,
    iterative_auth_checks,
    mainline_order,
    reverse_topological_power_order,
    split_state,
)
from matrixd.state.resolution.v2 import make_sender_power

from tests.differential.matrixd_side import MatrixdRoomCore

StateMapIds = Mapping[StateKey, str]

FEDERATE = "synapse m.federate also checks the target's server (spec: only the sender's)"
STEP1_X = "synapse grows state-res step 1's X only through full-conflicted-set events (spec: whole auth chain)"


def _domain(user_id: str) -> str:
    return user_id.split(":", 1)[-1]


def auth_deviation(
    event: Event, state: StateMapIds, events: Mapping[str, Event],
    mx_verdict: Optional[str], syn_verdict: Optional[str],
) -> Optional[str]:
    """Name the documented deviation behind an accept/reject disagreement, or None."""
    create_id = state.get(("m.room.create", ""))
    create = events.get(create_id) if create_id else None
    if (
        mx_verdict is None and syn_verdict is not None and "unfederatable" in syn_verdict
        and create is not None and create.content.get("m.federate") is False
        and event.type == "m.room.member" and isinstance(event.state_key, str)
        and _domain(event.sender) == _domain(create.sender)
        and _domain(event.state_key) != _domain(create.sender)
    ):
        return FEDERATE
    return None


def _x_through_full_set(graph: AuthGraph, power: Sequence[str], full: set[str]) -> set[str]:
    seen = set(power)
    todo = list(seen)
    while todo:
        for a in graph.parents(todo.pop()):
            if a in full and a not in seen:
                seen.add(a)
                todo.append(a)
    return seen


def resolve_with_synapse_step1(core: MatrixdRoomCore, state_sets: Sequence[StateMapIds]) -> dict[StateKey, str]:
    """matrixd's v2/v2.1 resolution, except that step 1's X is built as Synapse builds it."""
    rv = core.rv
    graph = AuthGraph({k: e for k, e in core.events.items() if e.room_id == core.room_id})
    rules = default_auth_rules()
    unconflicted, conflicted = split_state(state_sets)
    conflicted_ids: set[str] = set().union(*conflicted.values()) if conflicted else set()
    full = full_conflicted_set(rv, graph, conflicted_ids, auth_difference(graph, state_sets))
    create = graph.get("$" + core.room_id[1:]) if rv.room_id_is_create_event_hash else None
    x = _x_through_full_set(graph, [e for e in full if is_power_event(graph.events[e])], full)
    ordered = reverse_topological_power_order(graph, x, make_sender_power(rv, graph, rules, create))
    start = {} if rv.state_res == StateResAlgorithm.V2_1 else dict(unconflicted)
    state = iterative_auth_checks(rv, graph, start, ordered, rules, create)
    rest = mainline_order(graph, full - x, state.get(POWER_KEY))
    state = iterative_auth_checks(rv, graph, state, rest, rules, create)
    state.update(unconflicted)
    return state


def resolution_deviation(
    core: MatrixdRoomCore, state_sets: Sequence[StateMapIds], synapse_result: StateMapIds
) -> Optional[str]:
    """Name the documented deviation behind a resolution disagreement, or None."""
    if core.rv.state_res == StateResAlgorithm.V1:
        return None
    if resolve_with_synapse_step1(core, state_sets) == dict(synapse_result):
        return STEP1_X
    return None
