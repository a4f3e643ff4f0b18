"""The in-memory store the Synapse oracle reads answers as the spec defines."""

from __future__ import annotations

import random

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
from matrixd.testing.dag import EventFactory

from tests.differential.synapse_side import SynapseRoomCore


class OracleStoreTests(unittest.TestCase):
    def setUp(self) -> None:
        # create <- join <- pl1 <- pl2 <- topic_a ; pl1 <- topic_b   (auth_events edges)
        f = EventFactory(KNOWN_ROOM_VERSIONS["1"], random.Random(1))
        alice = "@alice:a.example"
        c = f.make_create(alice, {"creator": alice})
        j = f.make("m.room.member", alice, {"membership": "join"}, prev_events=[c.event_id],
                   auth_events=[c.event_id], state_key=alice)
        p1 = f.make("m.room.power_levels", alice, {"users": {alice: 100}}, prev_events=[j.event_id],
                    auth_events=[c.event_id, j.event_id], state_key="")
        p2 = f.make("m.room.power_levels", alice, {"users": {alice: 100}, "ban": 10}, prev_events=[p1.event_id],
                    auth_events=[c.event_id, j.event_id, p1.event_id], state_key="")
        ta = f.make("m.room.topic", alice, {"topic": "a"}, prev_events=[p2.event_id],
                    auth_events=[c.event_id, j.event_id, p2.event_id], state_key="")
        tb = f.make("m.room.topic", alice, {"topic": "b"}, prev_events=[p1.event_id],
                    auth_events=[c.event_id, j.event_id, p1.event_id], state_key="")
        self.ids = {"c": c.event_id, "j": j.event_id, "p1": p1.event_id, "p2": p2.event_id,
                    "ta": ta.event_id, "tb": tb.event_id}
        self.core = SynapseRoomCore("1", f.room_id)
        for e in (c, j, p1, p2, ta, tb):
            self.core.add_outlier(e)

    def _diff(self, sets: list[set[str]], conflicted: set[str]) -> tuple[set[str], set[str]]:
        d = defer.ensureDeferred(self.core.store.get_auth_chain_difference("!r", sets, conflicted, None))
        result = self.successResultOf(d)
        assert result.conflicted_subgraph is not None
        return set(result.auth_difference), set(result.conflicted_subgraph)

    def test_auth_difference(self) -> None:
        """The auth difference is the union of the state sets' chains minus their intersection."""
        i = self.ids
        diff, _ = self._diff([{i["ta"], i["j"]}, {i["tb"], i["j"]}], {i["ta"], i["tb"]})
        self.assertEqual(diff, {i["ta"], i["p2"], i["tb"]})

    def test_conflicted_subgraph_follows_paths_between_conflicted_events(self) -> None:
        """The subgraph holds the events on auth paths from one conflicted event to another."""
        i = self.ids
        _, sub = self._diff([{i["ta"]}, {i["p1"]}], {i["ta"], i["p1"]})
        self.assertEqual(sub, {i["ta"], i["p2"], i["p1"]})
        self.assertNotIn(i["c"], sub)
        self.assertNotIn(i["j"], sub)
