"""Minimal room v1 resolutions where matrixd and Synapse were seen to differ.

Room v1's state resolution text (``content/rooms/v1.md``) leaves two things
open, and Synapse (whose behaviour the text was written from, and which every
v1 room on the network follows) settles them as pinned here:

* a non-auth key whose candidates all fail the auth rules in R keeps the last
  candidate of the order (the lowest depth, then the highest sha1), rather than
  dropping out of the state;
* each conflicted ``m.room.member`` key is resolved against R as it stood
  after the join-rules pass: other conflicted memberships are not in it yet.

Found by ``test_vs_synapse`` (room v1, e.g. seeds 21, 23 and 32 for the first,
seed 189 of ``scripts/diff_room_core.py`` for the second).
"""

from __future__ import annotations

import random
from typing import Any, Coroutine, Optional

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.events.event import Event, StateKey
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
from matrixd.testing.dag import EventFactory

from tests.differential.matrixd_side import MatrixdRoomCore
from tests.differential.synapse_side import SynapseRoomCore

ALICE = "@alice:a.example"
CAROL = "@carol:c.example"
RV = KNOWN_ROOM_VERSIONS["1"]


class _Room:
    def __init__(self) -> None:
        self.f = EventFactory(RV, random.Random(5))
        self.create = self.f.make_create(ALICE, {"creator": ALICE})
        self.alice = self.send("m.room.member", ALICE, {"membership": "join"}, ALICE, [self.create], [self.create])

    def send(self, etype: str, sender: str, content: dict[str, Any], state_key: Optional[str],
             prev: list[Event], auth: list[Event]) -> Event:
        return self.f.make(etype, sender, content, prev_events=[e.event_id for e in prev],
                           auth_events=[e.event_id for e in auth], state_key=state_key)

    def resolve_both(self, *states: dict[StateKey, str]) -> tuple[dict[StateKey, str], dict[StateKey, str]]:
        mx = MatrixdRoomCore(RV, self.f.room_id)
        syn = SynapseRoomCore("1", self.f.room_id)
        for e in self.f.events.values():
            mx.add_outlier(e)
            syn.add_outlier(e)
        return _now(mx.resolve(list(states))), _now(syn.resolve(list(states)))


def _now(coro: Coroutine[Any, Any, dict[StateKey, str]]) -> dict[StateKey, str]:
    out: list[Any] = []
    defer.ensureDeferred(coro).addBoth(out.append)
    if not isinstance(out[0], dict):
        out[0].raiseException()
    return out[0]  # type: ignore[no-any-return]


class V1ResolutionCases(unittest.TestCase):
    def test_key_whose_candidates_all_fail_keeps_the_last_candidate(self) -> None:
        """A conflicted name whose every candidate fails in R keeps the lowest-depth one."""
        room = _Room()
        base = [room.create, room.alice]
        pl1 = room.send("m.room.power_levels", ALICE, {"users": {ALICE: 100}, "events": {"m.room.name": 50}}, "",
                        [room.alice], base)
        name1 = room.send("m.room.name", ALICE, {"name": "one"}, "", [pl1], base + [pl1])
        # One branch: alice demotes herself below the name level; the other renames the room.
        pl2 = room.send("m.room.power_levels", ALICE, {"users": {ALICE: 10}, "events": {"m.room.name": 50}}, "",
                        [name1], base + [pl1])
        name2 = room.send("m.room.name", ALICE, {"name": "two"}, "", [name1], base + [pl1])
        common = {("m.room.create", ""): room.create.event_id, ("m.room.member", ALICE): room.alice.event_id}
        x = {**common, ("m.room.power_levels", ""): pl2.event_id, ("m.room.name", ""): name1.event_id}
        y = {**common, ("m.room.power_levels", ""): pl1.event_id, ("m.room.name", ""): name2.event_id}
        matrixd, synapse = room.resolve_both(x, y)
        self.assertEqual(synapse.get(("m.room.name", "")), name1.event_id)
        self.assertEqual(matrixd, synapse)

    def test_member_keys_do_not_see_each_others_resolution(self) -> None:
        """A ban whose sender's own membership is conflicted too loses to the earlier join."""
        room = _Room()
        base = [room.create, room.alice]
        pl = room.send("m.room.power_levels", ALICE, {"users": {ALICE: 100}}, "", [room.alice], base)
        jr = room.send("m.room.join_rules", ALICE, {"join_rule": "public"}, "", [pl], base + [pl])
        carol = room.send("m.room.member", CAROL, {"membership": "join"}, CAROL, [jr], [room.create, pl, jr])
        # One branch: alice changes her display name; the other: alice bans carol.
        alice2 = room.send("m.room.member", ALICE, {"membership": "join", "displayname": "A"}, ALICE, [carol],
                           base + [pl, jr])
        ban = room.send("m.room.member", ALICE, {"membership": "ban"}, CAROL, [carol], base + [pl, carol])
        common = {("m.room.create", ""): room.create.event_id, ("m.room.power_levels", ""): pl.event_id,
                  ("m.room.join_rules", ""): jr.event_id}
        x = {**common, ("m.room.member", ALICE): alice2.event_id, ("m.room.member", CAROL): carol.event_id}
        y = {**common, ("m.room.member", ALICE): room.alice.event_id, ("m.room.member", CAROL): ban.event_id}
        matrixd, synapse = room.resolve_both(x, y)
        self.assertEqual(synapse.get(("m.room.member", CAROL)), carol.event_id)
        self.assertEqual(matrixd, synapse)
