"""State resolution: room version 1's algorithm, v2 (rooms 2-11) and v2.1 (room 12).

:func:`resolve_state` is the entry point: it loads what it needs through an
async event fetcher (conflicted events and auth chains, walked breadth-first
in batches and memoised), then runs the pure algorithm synchronously in
memory, optionally yielding to the reactor between slices of work.

The pieces of the algorithms are exposed for testing: the state splits,
the auth difference, the conflicted state subgraph, the full conflicted
set, the two orderings and the iterative auth checks. The auth rules are
injected (:class:`AuthRules`), defaulting to ``matrixd.state.auth``.
"""

from matrixd.state.resolution.common import (
    CREATE_KEY,
    JOIN_RULES_KEY,
    POWER_KEY,
    AuthRules,
    default_auth_rules,
    is_power_event,
    split_state,
    split_state_v1,
)
from matrixd.state.resolution.graph import (
    AuthGraph,
    auth_difference,
    auth_difference_split,
    conflicted_subgraph,
    power_events_with_auth_chains,
)
from matrixd.state.resolution.iterative import iterative_auth_checks
from matrixd.state.resolution.ordering import mainline, mainline_order, reverse_topological_power_order
from matrixd.state.resolution.resolve import AuthChainDifference, EventFetcher, EventLoader, resolve_state
from matrixd.state.resolution.v1 import resolve_v1
from matrixd.state.resolution.v2 import full_conflicted_set, resolve_v2

__all__ = [
    "CREATE_KEY",
    "JOIN_RULES_KEY",
    "POWER_KEY",
    "AuthChainDifference",
    "AuthGraph",
    "AuthRules",
    "EventFetcher",
    "EventLoader",
    "auth_difference",
    "auth_difference_split",
    "conflicted_subgraph",
    "default_auth_rules",
    "full_conflicted_set",
    "is_power_event",
    "iterative_auth_checks",
    "mainline",
    "mainline_order",
    "power_events_with_auth_chains",
    "resolve_state",
    "resolve_v1",
    "resolve_v2",
    "reverse_topological_power_order",
    "split_state",
    "split_state_v1",
]
