"""State resolution of room version 1, as ``content/rooms/v1.md`` words it.

Passes in order: power levels, join rules, memberships (each: ascending
depth then descending sha1(event id), take the first, then apply each next
one the rules allow in R, stopping at the first refusal), then every other
key (highest depth, then lowest sha1(event id), that the rules allow).
"""

from __future__ import annotations

import hashlib

from twisted.trial import unittest

from matrixd.events.room_versions import RoomVersions
from matrixd.state.resolution import POWER_KEY
from tests.state.resolution_fixtures import ALICE, BOB, CAROL, DAVE, Room, resolve

RV = RoomVersions.V1
TOPIC = ("m.room.topic", "")


def member(user: str) -> tuple[str, str]:
    return ("m.room.member", user)


class V1Tests(unittest.TestCase):
    def setUp(self) -> None:
        self.room = Room(RV)
        self.main = self.room.create(ALICE, users={BOB: 50})
        self.main.join(BOB)
        self.carol_join = self.main.join(CAROL)
        self.main.join(DAVE)

    def test_deeper_power_levels_win_when_allowed(self) -> None:
        """Power levels are applied shallowest first; a deeper one allowed on top of it wins."""
        a, b = self.main.branch(), self.main.branch()
        shallow = a.power(ALICE, {ALICE: 100, BOB: 50, CAROL: 10})
        b.topic(ALICE, "pad")
        deep = b.power(ALICE, {ALICE: 100, BOB: 50, DAVE: 10})
        self.assertLess(shallow.depth, deep.depth)
        self.assertEqual(resolve(self.room, [a.state, b.state])[POWER_KEY], deep.event_id)
        self.assertEqual(resolve(self.room, [b.state, a.state])[POWER_KEY], deep.event_id)

    def test_power_levels_pass_stops_at_first_refusal(self) -> None:
        """Once a power levels event is refused in R the pass stops, even if a deeper one would be allowed."""
        a, b, c = self.main.branch(), self.main.branch(), self.main.branch()
        demote = a.power(ALICE, {ALICE: 100})
        b.topic(BOB, "pad")
        b.power(BOB, {ALICE: 100, BOB: 50, CAROL: 10})
        c.topic(ALICE, "pad")
        c.topic(ALICE, "pad again")
        allowed_but_too_late = c.power(ALICE, {ALICE: 100, BOB: 50, DAVE: 10})
        resolved = resolve(self.room, [a.state, b.state, c.state])
        self.assertEqual(resolved[POWER_KEY], demote.event_id)
        self.assertNotEqual(resolved[POWER_KEY], allowed_but_too_late.event_id)

    def test_other_keys_take_deepest_allowed(self) -> None:
        """Other keys get the deepest candidate the rules allow in R, skipping refused deeper ones."""
        a, b = self.main.branch(), self.main.branch()
        a.topic(BOB, "one")
        a.topic(BOB, "two")
        deepest = a.topic(BOB, "three")
        b.power(ALICE, {ALICE: 100})  # Bob demoted: his topics are refused in R
        alices = b.topic(ALICE, "alice")
        self.assertGreater(deepest.depth, alices.depth)
        self.assertEqual(resolve(self.room, [a.state, b.state])[TOPIC], alices.event_id)

    def test_other_keys_depth_tie_takes_lowest_sha1(self) -> None:
        """Equal depth: the candidate with the lowest sha1(event id) wins."""
        a, b = self.main.branch(), self.main.branch()
        t1 = a.topic(ALICE, "a")
        t2 = b.topic(ALICE, "b")
        self.assertEqual(t1.depth, t2.depth)
        expected = min((t1.event_id, t2.event_id), key=lambda e: hashlib.sha1(e.encode()).digest())
        self.assertEqual(resolve(self.room, [a.state, b.state])[TOPIC], expected)
        self.assertEqual(resolve(self.room, [b.state, a.state])[TOPIC], expected)

    def test_power_levels_depth_tie_applies_lowest_sha1_last(self) -> None:
        """Equal-depth power levels: descending sha1 order, so the lowest sha1 is applied last and wins."""
        a, b = self.main.branch(), self.main.branch()
        p1 = a.power(ALICE, {ALICE: 100, BOB: 50, CAROL: 10})
        p2 = b.power(ALICE, {ALICE: 100, BOB: 50, DAVE: 10})
        expected = min((p1.event_id, p2.event_id), key=lambda e: hashlib.sha1(e.encode()).digest())
        self.assertEqual(resolve(self.room, [a.state, b.state])[POWER_KEY], expected)

    def test_key_missing_from_a_set_is_not_a_conflict(self) -> None:
        """A key only one set has is unconflicted in v1 and kept unchecked; v2 would check and drop it."""
        for rv, kept in ((RoomVersions.V1, True), (RoomVersions.V2, False)):
            room = Room(rv)
            main = room.create(ALICE, users={BOB: 50})
            main.join(BOB)
            a, b = main.branch(), main.branch()
            a.power(ALICE, {ALICE: 100})
            topic = b.topic(BOB, "bob's")
            resolved = resolve(room, [a.state, b.state])
            self.assertEqual(resolved.get(TOPIC) == topic.event_id, kept, rv.identifier)

    def test_power_levels_resolved_before_memberships(self) -> None:
        """Memberships are checked against the already resolved power levels."""
        a, b = self.main.branch(), self.main.branch()
        demote = a.power(ALICE, {ALICE: 100})
        b.member(BOB, CAROL, "leave")
        resolved = resolve(self.room, [a.state, b.state])
        self.assertEqual(resolved[POWER_KEY], demote.event_id)
        self.assertEqual(resolved[member(CAROL)], self.carol_join.event_id)

    def test_deeper_membership_wins_when_allowed(self) -> None:
        """Membership candidates apply shallowest first; a deeper allowed change ends up in R."""
        a, b = self.main.branch(), self.main.branch()
        a.send("m.room.member", DAVE, {"membership": "join", "displayname": "D"}, DAVE)
        b.topic(ALICE, "pad")
        kick = b.member(ALICE, DAVE, "leave")
        self.assertEqual(resolve(self.room, [a.state, b.state])[member(DAVE)], kick.event_id)
        # And the other way round: a rejoin deeper than the kick is allowed (public room).
        c, d = self.main.branch(), self.main.branch()
        c.member(ALICE, DAVE, "leave")
        d.topic(ALICE, "pad")
        d.topic(ALICE, "pad")
        rename = d.send("m.room.member", DAVE, {"membership": "join", "displayname": "D"}, DAVE)
        self.assertEqual(resolve(self.room, [c.state, d.state])[member(DAVE)], rename.event_id)

    def test_missing_conflicted_events_are_ignored(self) -> None:
        """A conflicted event the fetcher cannot return takes no part; the other candidate stands."""
        a, b = self.main.branch(), self.main.branch()
        kept = a.topic(ALICE, "kept")
        lost = b.topic(ALICE, "lost")
        b.topic(ALICE, "deeper, lost too")
        del self.room.events[b.state[TOPIC]]
        del self.room.events[lost.event_id]
        self.assertEqual(resolve(self.room, [a.state, b.state])[TOPIC], kept.event_id)

    def test_rejected_events_are_never_chosen(self) -> None:
        """A rejected candidate is skipped, even when it is the deepest allowed one."""
        a, b = self.main.branch(), self.main.branch()
        kept = a.topic(ALICE, "kept")
        b.topic(ALICE, "pad")
        deeper = b.topic(ALICE, "rejected")
        deeper.internal_metadata.rejected_reason = "auth_error"
        self.assertEqual(resolve(self.room, [a.state, b.state])[TOPIC], kept.event_id)

    def test_rejected_events_are_not_used_for_auth(self) -> None:
        """A rejected event in R does not authorise anything: a member whose join was rejected cannot act."""
        a, b = self.main.branch(), self.main.branch()
        self.room.events[self.main.state[member(BOB)]].internal_metadata.rejected_reason = "auth_error"
        kept = a.topic(ALICE, "kept")
        b.topic(BOB, "pad")
        b.topic(BOB, "by bob")
        self.assertEqual(resolve(self.room, [a.state, b.state])[TOPIC], kept.event_id)
