"""The two orderings of state resolution v2: reverse topological power ordering and mainline ordering."""

from __future__ import annotations

import heapq
from typing import Callable, Collection, Optional

from matrixd.events.event import Event
from matrixd.state.resolution.common import PowerLevel
from matrixd.state.resolution.graph import AuthGraph

_POWER_LEVELS = "m.room.power_levels"


def reverse_topological_power_order(
    graph: AuthGraph, event_ids: Collection[str], sender_power: Callable[[Event], PowerLevel]
) -> list[str]:
    """Sort events earliest first: auth events before the events citing them, ties by power, ts, id.

    Kahn's algorithm over the auth edges between the given events, always
    taking the smallest ready event by (sender's power level descending,
    ``origin_server_ts`` ascending, event id ascending). ``sender_power``
    gives the power level of an event's sender according to its own auth
    events. Unknown ids are dropped. Events caught in a (malformed) auth
    cycle never become ready; they are appended last in comparison order
    rather than lost.
    """
    events = graph.events
    ids = {eid for eid in event_ids if eid in events}
    children: dict[str, list[str]] = {}
    indegree: dict[str, int] = {}
    keys: dict[str, tuple[PowerLevel, int, str]] = {}
    ready: list[tuple[PowerLevel, int, str]] = []
    for eid in ids:
        ev = events[eid]
        keys[eid] = (-sender_power(ev), ev.origin_server_ts, eid)
        n = 0
        for a in graph.parents(eid):  # a (malformed) duplicate edge counts twice both ways
            if a in ids:
                children.setdefault(a, []).append(eid)
                n += 1
        indegree[eid] = n
        if n == 0:
            ready.append(keys[eid])
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        eid = heapq.heappop(ready)[2]
        out.append(eid)
        for child in children.get(eid, ()):
            n = indegree[child] - 1
            indegree[child] = n
            if n == 0:
                heapq.heappush(ready, keys[child])
    if len(out) < len(ids):
        done = set(out)
        out.extend(sorted((eid for eid in ids if eid not in done), key=keys.__getitem__))
    return out


def power_levels_parent(graph: AuthGraph, event_id: str) -> Optional[str]:
    """The ``m.room.power_levels`` event (state key "") among an event's auth events, if loaded."""
    events = graph.events
    for aid in graph.parents(event_id):
        a = events.get(aid)
        if a is not None and a.type == _POWER_LEVELS and a.state_key == "":
            return aid
    return None


def mainline(graph: AuthGraph, power_levels_id: Optional[str]) -> list[str]:
    """The mainline of a power levels event: it, its power levels auth event, and so on back."""
    out: list[str] = []
    seen: set[str] = set()
    pid = power_levels_id
    while pid is not None and pid not in seen and graph.get(pid) is not None:
        out.append(pid)
        seen.add(pid)
        pid = power_levels_parent(graph, pid)
    return out


def mainline_order(graph: AuthGraph, event_ids: Collection[str], power_levels_id: Optional[str]) -> list[str]:
    """Sort events by mainline position (earlier mainline first), then ``origin_server_ts``, then id.

    An event's position is the index in the mainline of ``power_levels_id``
    of the first event in its chain of power-levels auth events that lies on
    the mainline (the event itself is not considered); events whose chain
    never meets the mainline come first. Positions of the power levels
    events walked are memoised, so each chain is walked once per resolution.
    """
    line = mainline(graph, power_levels_id)
    infinity = len(line)
    position: dict[str, int] = {pid: i for i, pid in enumerate(line)}

    def position_of_chain(start: Optional[str]) -> int:
        # Position of a power levels event as "the first of its chain (itself
        # included) on the mainline"; memoised for every event walked.
        walked: list[str] = []
        pid = start
        pos = infinity
        while pid is not None:
            known = position.get(pid)
            if known is not None:
                pos = known
                break
            if pid in walked:  # malformed cycle
                break
            walked.append(pid)
            pid = power_levels_parent(graph, pid)
        for w in walked:
            position[w] = pos
        return pos

    keyed = []
    for eid in event_ids:
        ev = graph.get(eid)
        if ev is None:
            continue
        pos = position_of_chain(power_levels_parent(graph, eid))
        keyed.append((-pos, ev.origin_server_ts, eid))
    keyed.sort()
    return [k[2] for k in keyed]
