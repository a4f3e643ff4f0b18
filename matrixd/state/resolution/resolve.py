"""The entry point: load what a resolution needs through an async fetcher, then resolve in memory."""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Collection, Iterable, Mapping, Optional, Sequence

from matrixd.events.event import Event, StateKey
from matrixd.events.room_versions import RoomVersion, StateResAlgorithm
from matrixd.state.resolution.common import (
    CREATE_KEY,
    JOIN_RULES_KEY,
    POWER_KEY,
    AuthRules,
    create_event_id_for_room,
    default_auth_rules,
    split_state,
    split_state_v1,
)
from matrixd.state.resolution.graph import AuthGraph, auth_difference_split
from matrixd.state.resolution.v1 import resolve_v1
from matrixd.state.resolution.v2 import iter_resolve_v2

logger = logging.getLogger(__name__)

EventFetcher = Callable[[Collection[str]], Awaitable[Mapping[str, Event]]]
"""Returns the events it has among the ids asked for (rejected ones included, flagged)."""

AuthChainDifference = Callable[[str, Sequence[Mapping[StateKey, str]]], Awaitable[Collection[str]]]
"""``(room_id, state_sets)`` -> their auth difference, each set's chain including the set's
own events (:func:`graph.auth_difference`); lets storage with an auth chain index skip
loading every state event's auth chain."""


class EventLoader:
    """Fetches events in batches and remembers them (and what is missing) for one resolution."""

    def __init__(self, room_id: str, fetch_events: EventFetcher) -> None:
        self._room_id = room_id
        self._fetch = fetch_events
        self.events: dict[str, Event] = {}
        self.graph = AuthGraph(self.events)
        self._missing: set[str] = set()
        self._closed: set[str] = set()  # events whose whole auth chain is loaded

    async def load(self, event_ids: Iterable[str]) -> None:
        events, missing = self.events, self._missing
        want = [i for i in set(event_ids) if i not in events and i not in missing]
        if not want:
            return
        got = await self._fetch(want)
        room_id = self._room_id
        for eid in want:
            ev = got.get(eid)
            if ev is None:
                missing.add(eid)
            elif ev.room_id != room_id:
                logger.warning("state res in %s: ignoring event %s of room %s", room_id, eid, ev.room_id)
                missing.add(eid)
            else:
                events[eid] = ev

    async def load_closure(self, seeds: Iterable[str]) -> None:
        """Load the seeds and their auth chains, one fetch per level of the walk."""
        closed, parents = self._closed, self.graph.parents
        frontier = set(seeds) - closed
        visited: set[str] = set()
        while frontier:
            await self.load(frontier)
            visited |= frontier
            nxt: set[str] = set()
            for eid in frontier:
                nxt.update(parents(eid))
            frontier = nxt - visited - closed
        closed |= visited


async def resolve_state(
    room_id: str,
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    fetch_events: EventFetcher,
    *,
    clock_yield: Optional[Callable[[], Awaitable[object]]] = None,
    auth_rules: Optional[AuthRules] = None,
    auth_chain_difference: Optional[AuthChainDifference] = None,
) -> dict[StateKey, str]:
    """Resolve ``state_sets`` with the algorithm of ``room_version``.

    Args:
        room_id: the room; fetched events of another room are ignored.
        room_version: picks v1, v2 or v2.1 and the auth rules' flags.
        state_sets: the states to resolve, ``(type, state_key) -> event id``.
        fetch_events: loads events by id in batches; ids it does not return
            are treated as unknown events (never in the result unless
            unconflicted, and without auth events).
        clock_yield: awaited between phases and every hundred auth checks,
            e.g. ``lambda: clock.sleep(0)``, so a big resolution does not
            hold the reactor.
        auth_rules: the auth rules to check against (default:
            ``matrixd.state.auth``).
        auth_chain_difference: computes the auth difference from storage
            instead of walking every state event's auth chain in memory.

    Returns:
        The resolved state map.
    """
    if not state_sets:
        return {}
    if len(state_sets) == 1:
        return dict(state_sets[0])
    rules = auth_rules if auth_rules is not None else default_auth_rules()
    loader = EventLoader(room_id, fetch_events)
    if room_version.state_res == StateResAlgorithm.V1:
        return await _resolve_v1(room_version, state_sets, loader, rules)

    unconflicted, conflicted = split_state(state_sets)
    if not conflicted:
        return unconflicted
    conflicted_ids: set[str] = set().union(*conflicted.values())
    if auth_chain_difference is not None:
        auth_diff = set(await auth_chain_difference(room_id, state_sets))
    else:
        common = unconflicted.values()
        others = [{s[k] for k in conflicted if k in s} for s in state_sets]
        await loader.load_closure(conflicted_ids.union(common))
        auth_diff = auth_difference_split(loader.graph, common, others)
    if clock_yield is not None:
        await clock_yield()

    create_id = create_event_id_for_room(room_version, room_id)
    seeds = conflicted_ids | auth_diff
    if create_id is not None:
        seeds.add(create_id)
    await loader.load_closure(seeds)
    auth_keys: dict[str, list[StateKey]] = {}
    if room_version.state_res == StateResAlgorithm.V2:
        # Step 2 starts from the unconflicted state: load the parts the auth rules will read.
        keys = {CREATE_KEY, POWER_KEY, JOIN_RULES_KEY}
        for eid in seeds:
            ev = loader.events.get(eid)
            if ev is not None and ev.state_key is not None:
                event_keys = auth_keys[eid] = list(rules.auth_types_for_event(room_version, ev))
                keys.update(event_keys)
        await loader.load_closure(unconflicted[k] for k in keys if k in unconflicted)
    create_event = loader.events.get(create_id) if create_id is not None else None

    gen = iter_resolve_v2(
        room_version, loader.graph, unconflicted, conflicted_ids, auth_diff, rules, create_event, auth_keys
    )
    while True:
        try:
            next(gen)
        except StopIteration as done:
            result: dict[StateKey, str] = done.value
            return result
        if clock_yield is not None:
            await clock_yield()


async def _resolve_v1(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    loader: EventLoader,
    rules: AuthRules,
) -> dict[StateKey, str]:
    unconflicted, conflicted = split_state_v1(state_sets)
    if not conflicted:
        return unconflicted
    await loader.load(set().union(*conflicted.values()))
    keys = {CREATE_KEY}
    for ev in list(loader.events.values()):
        keys.update(rules.auth_types_for_event(room_version, ev))
    await loader.load(unconflicted[k] for k in keys if k in unconflicted)
    return resolve_v1(room_version, loader.events, unconflicted, conflicted, rules)
