"""The room state at a point of the DAG: after a set of events, resolving forks."""

from __future__ import annotations

from typing import Collection, Iterable, Mapping, Optional, Sequence

import attrs

from matrixd.events.event import Event, StateKey, StateMap
from matrixd.events.room_versions import RoomVersion
from matrixd.storage.events import EventStore
from matrixd.storage.state import StateGroupStore


@attrs.frozen(slots=True)
class StateAtPoint:
    """A state map, and the stored group holding exactly it (None if it had to be resolved)."""

    state_ids: StateMap
    state_group: Optional[int]


class StateCalculator:
    """Works out the state after a set of events (the state before a new event with those prev_events)."""

    def __init__(self, event_store: EventStore, state_store: StateGroupStore) -> None:
        self._events = event_store
        self._state = state_store

    async def state_after_events(
        self, room_id: str, room_version: RoomVersion, event_ids: Collection[str]
    ) -> StateAtPoint:
        if not event_ids:
            return StateAtPoint({}, None)
        groups = await self._state.get_state_groups_for_events(event_ids)
        missing = [e for e in event_ids if e not in groups]
        if missing:
            raise RuntimeError(f"no state known after events {missing} in {room_id}")
        distinct = sorted(set(groups.values()))
        if len(distinct) == 1:
            group = distinct[0]
            return StateAtPoint(await self._state.get_state_ids_for_group(group), group)
        state_sets = await self._state.get_state_ids_for_groups(distinct)
        from matrixd.state.resolution import resolve_state

        resolved = await resolve_state(
            room_id, room_version, list(state_sets.values()), self._events.get_events,
            auth_chain_difference=self._auth_chain_difference,
        )
        return StateAtPoint(resolved, None)

    async def state_sets_after_events(self, room_id: str, event_ids: Collection[str]) -> list[StateMap]:
        """The distinct states after each of ``event_ids`` (unresolved; one per state group)."""
        if not event_ids:
            return []
        groups = await self._state.get_state_groups_for_events(event_ids)
        missing = [e for e in event_ids if e not in groups]
        if missing:
            raise RuntimeError(f"no state known after events {missing} in {room_id}")
        by_group = await self._state.get_state_ids_for_groups(sorted(set(groups.values())))
        return list(by_group.values())

    async def resolve_with_extremities(
        self, room_id: str, room_version: RoomVersion, extremities: Collection[str], state: StateMap,
        extra_events: Optional[Mapping[str, Event]] = None,
    ) -> StateMap:
        """The room's state with a branch whose state is ``state`` joined to the forward ``extremities``.

        Resolves the states after each extremity together with ``state``: the
        state a merge event on all of them will see.  (Resolving the *current*
        state, itself a resolution, against ``state`` is not the same: in v2.1
        the iterative auth checks start from an empty map, so an event beaten
        by a power change in one fork can win again once that change is
        unconflicted.)
        """
        sets = await self.state_sets_after_events(room_id, extremities)
        return await self.resolve(room_id, room_version, [*sets, state], extra_events)

    async def resolve(self, room_id: str, room_version: RoomVersion, state_sets: Sequence[StateMap],
                      extra_events: Optional[Mapping[str, Event]] = None) -> StateMap:
        """Resolve ``state_sets`` (e.g. the current state and the state after a received event).

        ``extra_events``: events the sets name that are not stored yet (the event being persisted).
        """
        distinct = [dict(s) for i, s in enumerate(state_sets) if dict(s) not in [dict(t) for t in state_sets[:i]]]
        if len(distinct) <= 1:
            return distinct[0] if distinct else {}
        from matrixd.state.resolution import resolve_state

        extra = dict(extra_events or {})

        async def fetch(event_ids: Iterable[str]) -> dict[str, Event]:
            ids = list(event_ids)
            found = await self._events.get_events([i for i in ids if i not in extra])
            found.update((i, extra[i]) for i in ids if i in extra)
            return found

        async def difference(rid: str, sets: Sequence[StateMap]) -> set[str]:
            return await self._auth_chain_difference(rid, sets, extra)

        return await resolve_state(room_id, room_version, distinct, fetch, auth_chain_difference=difference)

    async def _auth_chain_difference(self, room_id: str, state_sets: Sequence[StateMap],
                                     extra: Optional[Mapping[str, Event]] = None) -> set[str]:
        """v2's auth difference from the database: each set's auth chain includes the set's own events.

        An ``extra`` (unstored) event's chain is itself plus its auth events' chains.
        """
        extra = extra or {}
        chains = []
        for s in state_sets:
            ids = list(s.values())
            stored = [i for i in ids if i not in extra]
            stored += [a for i in ids if i in extra for a in extra[i].auth_event_ids()]
            chain = await self._events.get_auth_chain_ids(stored, include_given=True)
            chains.append(chain | {i for i in ids if i in extra})
        if not chains:
            return set()
        return set().union(*chains) - set(chains[0]).intersection(*chains[1:])

    async def load_state_events(self, state_ids: Mapping[StateKey, str],
                                keys: Collection[StateKey]) -> dict[StateKey, Event]:
        """The events for ``keys`` of a state map (those present)."""
        wanted = {k: state_ids[k] for k in keys if k in state_ids}
        events = await self._events.get_events(wanted.values())
        return {k: events[eid] for k, eid in wanted.items() if eid in events}
