"""Big-room state resolution: agreement with Synapse at moderate size, and a benchmark entry point.

Run the benchmark (two forks of a 5,000-member room, 500 conflicted state
events by default) with::

    /work/venv/bin/python -m tests.state.test_resolution_bench [members] [conflicted] [room version]

It times Synapse's ``resolve_events_with_store`` (black box) and ours on the
same events, both ways: with the auth difference handed over for free (what
a storage layer with an auth chain index provides), and with each computing
it in memory from the events.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any, Callable, Collection, Mapping, Optional, Sequence

import synapse.event_auth  # noqa: F401  (import order: breaks synapse.state's import cycle)
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS as SYNAPSE_ROOM_VERSIONS
from synapse.state import v2 as synapse_v2
from synapse.storage.databases.main.event_federation import StateDifference
from twisted.internet import defer
from twisted.trial import unittest

from matrixd.events.event import StateKey
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion, RoomVersions
from matrixd.state.resolution import AuthGraph, auth_difference, conflicted_subgraph, default_auth_rules, resolve_state
from tests.state.resolution_fixtures import Room, build_big_forked_room, run
from tests.state.test_resolution_differential import _NoWaitClock, _SynapseStore, synapse_event_id


class _IndexedSynapseStore(_SynapseStore):
    """A Synapse store answering the auth difference at no cost, as an auth chain index would."""

    def __init__(self, room: Room, difference: set[str]) -> None:
        super().__init__(room)
        self._room = room
        self._difference = difference
        self._subgraphs: dict[frozenset[str], set[str]] = {}

    async def get_auth_chain_difference(
        self, room_id: str, state_sets: list[set[str]], conflicted_state: Optional[set[str]], additional: Optional[set[str]]
    ) -> StateDifference:
        subgraph = None
        if conflicted_state is not None:
            key = frozenset(conflicted_state)
            if key not in self._subgraphs:  # computed once: an index would answer it cheaply
                self._subgraphs[key] = conflicted_subgraph(AuthGraph(self._room.events), conflicted_state)
            subgraph = self._subgraphs[key]
        return StateDifference(auth_difference=self._difference, conflicted_subgraph=subgraph)


class Contest:
    """One forked room and the four ways of resolving it that the benchmark compares."""

    def __init__(self, room_version: RoomVersion, members: int, conflicted: int) -> None:
        id_for = None if room_version.identifier in ("1", "2") else synapse_event_id
        self.room, a, b = build_big_forked_room(room_version, members, conflicted, id_for=id_for)
        self.sets: list[Mapping[StateKey, str]] = [a.state, b.state]
        self.difference = auth_difference(AuthGraph(self.room.events), self.sets)
        self.indexed = _IndexedSynapseStore(self.room, self.difference)
        self.plain = _SynapseStore(self.room)
        self.rules = default_auth_rules()

    def ours(self, with_index: bool) -> dict[StateKey, str]:
        async def difference(room_id: str, state_sets: Sequence[Mapping[StateKey, str]]) -> Collection[str]:
            return self.difference

        room = self.room
        result: dict[StateKey, str] = run(
            defer.ensureDeferred(
                resolve_state(
                    room.room_id, room.room_version, self.sets, room.fetch, auth_rules=self.rules,
                    auth_chain_difference=difference if with_index else None,
                )
            )
        )
        return result

    def synapse(self, with_index: bool) -> dict[StateKey, str]:
        store = self.indexed if with_index else self.plain
        in_flight = None if with_index else dict(store.events)
        d = defer.ensureDeferred(
            synapse_v2.resolve_events_with_store(
                _NoWaitClock(),
                self.room.room_id,
                SYNAPSE_ROOM_VERSIONS[self.room.room_version.identifier],
                self.sets,
                in_flight,
                store,
            )
        )
        return dict(run(d))


class BigRoomTests(unittest.TestCase):
    def test_agrees_with_synapse(self) -> None:
        """A 600-member room forked by 120 state events resolves as Synapse does, with and without an index."""
        for rv in (RoomVersions.V2, RoomVersions.V12):
            contest = Contest(rv, 600, 120)
            expected = contest.synapse(with_index=True)
            self.assertEqual(contest.ours(with_index=True), expected, rv.identifier)
            self.assertEqual(contest.ours(with_index=False), expected, rv.identifier)
            self.assertEqual(contest.synapse(with_index=False), expected, rv.identifier)


def _best_cpu_time(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def main(argv: list[str]) -> None:
    members = int(argv[1]) if len(argv) > 1 else 5000
    conflicted = int(argv[2]) if len(argv) > 2 else 500
    rv = KNOWN_ROOM_VERSIONS[argv[3] if len(argv) > 3 else "11"]
    contest = Contest(rv, members, conflicted)
    print(f"room v{rv.identifier}: {len(contest.room.events)} events, {members} members, {conflicted} conflicted state events")
    results = {}
    for with_index in (True, False):
        label = "auth difference from an index" if with_index else "auth difference computed in memory"
        theirs = _best_cpu_time(lambda: contest.synapse(with_index), 3 if with_index else 2)
        ours = _best_cpu_time(lambda: contest.ours(with_index), 10)
        results[with_index] = contest.ours(with_index) == contest.synapse(with_index)
        print(f"  {label}: synapse {theirs * 1000:.1f} ms, matrixd {ours * 1000:.1f} ms ({theirs / ours:.1f}x)")
    print("  same result:", all(results.values()))


if __name__ == "__main__":
    main(sys.argv)
