"""matrixd's auth rules and state resolution agree with Synapse's on random rooms.

Each test walks ``MATRIXD_DIFF_SEEDS`` (default 100) seeded rooms of one room
version through both implementations (see ``compare.py``) and fails listing the
seed of every room where they differ; replay one with
``scripts/diff_room_core.py --versions V --seed S --count 1 --trace``.
Rooms that hit a documented Synapse deviation (``known_deviations.py``) end
there uncounted unless ``MATRIXD_DIFF_STRICT=1``.
"""

from __future__ import annotations

import os

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
from matrixd.testing.dag import generate_dag

from tests.differential.compare import RoomRun, compare_many

SEEDS = int(os.environ.get("MATRIXD_DIFF_SEEDS", "100"))
STRICT = os.environ.get("MATRIXD_DIFF_STRICT", "") not in ("", "0")
EVENTS_PER_ROOM = 40


class RoomCoreAgreesWithSynapse(unittest.TestCase):
    async def _compare(self, version: str) -> None:
        runs = await compare_many([version], range(SEEDS), EVENTS_PER_ROOM, strict=STRICT)
        self._check_coverage(runs)
        failures = [r.mismatch.describe() for r in runs if r.mismatch is not None]
        if failures:
            self.fail(f"{len(failures)} of {len(runs)} rooms differ (room version {version}):\n" + "\n".join(failures))

    def _check_coverage(self, runs: list[RoomRun]) -> None:
        # The comparison must have exercised both outcomes and real conflicts.
        self.assertGreater(sum(r.accepted for r in runs), 0)
        self.assertGreater(sum(r.rejected for r in runs), 0)
        self.assertGreater(sum(r.conflicted_resolutions for r in runs), 0)

    def test_room_v1(self) -> "defer.Deferred[None]":
        """Rooms v1 (state res v1, original auth rules) agree with Synapse."""
        return defer.ensureDeferred(self._compare("1"))

    def test_room_v2(self) -> "defer.Deferred[None]":
        """Rooms v2 (state res v2) agree with Synapse."""
        return defer.ensureDeferred(self._compare("2"))

    def test_room_v6(self) -> "defer.Deferred[None]":
        """Rooms v6 (no aliases special case, hash ids, notifications levels) agree with Synapse."""
        return defer.ensureDeferred(self._compare("6"))

    def test_room_v10(self) -> "defer.Deferred[None]":
        """Rooms v10 (knock, restricted, integer-only power levels) agree with Synapse."""
        return defer.ensureDeferred(self._compare("10"))

    def test_room_v11(self) -> "defer.Deferred[None]":
        """Rooms v11 (implicit creator) agree with Synapse."""
        return defer.ensureDeferred(self._compare("11"))

    def test_room_v12(self) -> "defer.Deferred[None]":
        """Rooms v12 (privileged creators, hashed room ids, state res v2.1) agree with Synapse."""
        return defer.ensureDeferred(self._compare("12"))


class GeneratorTests(unittest.TestCase):
    def test_same_seed_same_room(self) -> None:
        """A (room version, seed) pair always generates the same events."""
        for version in ("1", "12"):
            rv = KNOWN_ROOM_VERSIONS[version]
            a = generate_dag(rv, 7, 30)
            b = generate_dag(rv, 7, 30)
            self.assertEqual([e.event_id for e in a.events], [e.event_id for e in b.events])
            self.assertEqual([e.get_pdu_json() for e in a.events], [e.get_pdu_json() for e in b.events])

    def test_rooms_fork_and_merge(self) -> None:
        """Generated rooms contain forks (events sharing a parent) and merges (several prev events)."""
        dag = generate_dag(KNOWN_ROOM_VERSIONS["10"], 3, 60)
        children: dict[str, int] = {}
        for e in dag.events:
            for p in e.prev_event_ids():
                children[p] = children.get(p, 0) + 1
        self.assertTrue(any(n > 1 for n in children.values()))
        self.assertTrue(any(len(e.prev_event_ids()) > 1 for e in dag.events))

    def test_events_follow_what_they_cite(self) -> None:
        """Events come after their prev and auth events, and ids are unique."""
        for version in ("2", "11"):
            dag = generate_dag(KNOWN_ROOM_VERSIONS[version], 11, 50)
            seen: set[str] = {o.event_id for o in dag.outliers}
            for e in dag.events:
                self.assertNotIn(e.event_id, seen)
                for ref in e.prev_event_ids() + e.auth_event_ids():
                    self.assertIn(ref, seen)
                seen.add(e.event_id)
