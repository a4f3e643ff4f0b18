"""Walks over the auth DAG of the events loaded for one resolution.

Everything here is pure and in memory: an :class:`AuthGraph` wraps the
events fetched so far (an event that could not be fetched simply has no
outgoing edges) and memoises each event's ``auth_events`` list, so the
repeated walks of one resolution parse each event's references once.
"""

from __future__ import annotations

from typing import Collection, Iterable, Mapping, Optional, Sequence

from matrixd.events.event import Event, StateKey


class AuthGraph:
    """The auth-event edges between a set of loaded events."""

    __slots__ = ("events", "_parents")

    def __init__(self, events: Mapping[str, Event]) -> None:
        self.events = events
        self._parents: dict[str, tuple[str, ...]] = {}

    def get(self, event_id: str) -> Optional[Event]:
        return self.events.get(event_id)

    def parents(self, event_id: str) -> tuple[str, ...]:
        """The ``auth_events`` ids of an event; empty if the event is unknown."""
        p = self._parents.get(event_id)
        if p is None:
            ev = self.events.get(event_id)
            if ev is None:
                return ()  # not cached: the event may be loaded later
            p = tuple(ev.auth_event_ids())
            self._parents[event_id] = p
        return p

    def closure(self, seeds: Iterable[str], stop: Collection[str] = ()) -> set[str]:
        """The seeds and every event reachable from them through auth events.

        Walks neither into nor through events in ``stop``.
        """
        seen: set[str] = set()
        todo = [s for s in seeds if s not in stop]
        seen.update(todo)
        parents = self.parents
        while todo:
            eid = todo.pop()
            for a in parents(eid):
                if a not in seen and a not in stop:
                    seen.add(a)
                    todo.append(a)
        return seen

    def postorder(self, seeds: Iterable[str]) -> list[str]:
        """The closure of ``seeds`` with every event after all of its reachable auth events.

        Iterative so a room with a very long auth chain cannot hit the
        recursion limit; tolerates (malformed) cycles by visiting each event once.
        """
        order: list[str] = []
        visited: set[str] = set()
        parents = self.parents
        for s in seeds:
            if s in visited:
                continue
            visited.add(s)
            stack = [(s, iter(parents(s)))]
            while stack:
                node, it = stack[-1]
                for a in it:
                    if a not in visited:
                        visited.add(a)
                        stack.append((a, iter(parents(a))))
                        break
                else:
                    stack.pop()
                    order.append(node)
        return order


def auth_difference(graph: AuthGraph, state_sets: Sequence[Mapping[StateKey, str]]) -> set[str]:
    """The auth difference of the given state sets.

    Each set's full auth chain is taken to include the set's own events as
    well as everything reachable from them, as Synapse does (see the notes in
    ``v2``): an event common to every set is never in the difference.
    """
    if not state_sets:
        return set()
    first, rest = state_sets[0], state_sets[1:]
    common = {eid for key, eid in first.items() if all(s.get(key) == eid for s in rest)}
    return auth_difference_split(graph, common, [set(s.values()) - common for s in state_sets])


def auth_difference_split(graph: AuthGraph, common: Collection[str], others: Sequence[Collection[str]]) -> set[str]:
    """The auth difference of state sets given as events in all of them plus each set's other events.

    ``common`` may be any subset of the events in every set (the unconflicted
    state, typically). Everything reachable from it is in every chain, so it
    is walked once and used as a stop set; only what lies beyond is walked
    per set.
    """
    if not others:
        return set()
    shared = graph.closure(common)
    reached = [graph.closure(o, stop=shared) for o in others]
    return reached[0].union(*reached[1:]) - reached[0].intersection(*reached[1:])


def conflicted_subgraph(graph: AuthGraph, conflicted: Collection[str]) -> set[str]:
    """Events on an auth-event path between two conflicted events, endpoints included (v2.1)."""
    conflicted_set = conflicted if isinstance(conflicted, (set, frozenset)) else set(conflicted)
    reaches: dict[str, bool] = {}
    parents = graph.parents
    # Postorder visits every event after its auth events, so each event's
    # "reaches a conflicted event" bit is known when its children ask for it.
    for eid in graph.postorder(conflicted_set):
        hit = eid in conflicted_set
        if not hit:
            for a in parents(eid):
                if reaches.get(a):
                    hit = True
                    break
        reaches[eid] = hit
    return {eid for eid, hit in reaches.items() if hit}


def power_events_with_auth_chains(graph: AuthGraph, power_events: Iterable[str], full_conflicted: Collection[str]) -> set[str]:
    """Step 1's set X: the power events plus the events of their auth chains in the full conflicted set."""
    power = set(power_events)
    return power | (graph.closure(power) & set(full_conflicted))
