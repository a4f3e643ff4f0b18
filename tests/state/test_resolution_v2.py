"""State resolution v2 (rooms 2-11) and v2.1 (room 12) end to end, on the known hard cases.

Every room here is built with events the real auth rules accept on their
own fork; each test resolves the forks' states and pins the spec's outcome.
"""

from __future__ import annotations

from twisted.trial import unittest

from matrixd.events.room_versions import RoomVersion, RoomVersions
from matrixd.state.resolution import CREATE_KEY, JOIN_RULES_KEY, POWER_KEY
from tests.state.resolution_fixtures import ALICE, BOB, CAROL, DAVE, EVE, Fork, Room, resolve

TOPIC = ("m.room.topic", "")

V2_FAMILY = (RoomVersions.V2, RoomVersions.V6, RoomVersions.V10, RoomVersions.V11)
ALL_V2 = V2_FAMILY + (RoomVersions.V12,)


def member(user: str) -> tuple[str, str]:
    return ("m.room.member", user)


def creator_levels(room_version: RoomVersion, **users: int) -> dict[str, int]:
    """A ``users`` map keeping alice at 100 where creators are listed (not in v12, where they may not be)."""
    levels = {} if room_version.privileged_creators else {ALICE: 100}
    levels.update({_uid(k): v for k, v in users.items()})
    return levels


def _uid(name: str) -> str:
    return f"@{name}:example.com"


class EasyCasesTests(unittest.TestCase):
    def test_no_state_sets(self) -> None:
        """Nothing to resolve gives the empty state."""
        self.assertEqual(resolve(Room(RoomVersions.V11), []), {})

    def test_single_and_identical_sets_need_no_events(self) -> None:
        """One set, or sets that agree on everything, resolve to themselves without fetching anything."""
        for rv in (RoomVersions.V1,) + ALL_V2:
            room = Room(rv)
            main = room.create(ALICE)
            main.join(BOB)
            room.events.clear()  # any fetch would now come back empty
            self.assertEqual(resolve(room, [main.state]), main.state)
            self.assertEqual(resolve(room, [main.state, dict(main.state), main.branch().state]), main.state)

    def test_unconflicted_keys_survive(self) -> None:
        """Keys only one fork changed keep the other forks' common values where they agree."""
        for rv in ALL_V2:
            room = Room(rv)
            main = room.create(ALICE, users={BOB: 50})
            main.join(BOB)
            main.join(CAROL)
            a, b = main.branch(), main.branch()
            topic = a.topic(BOB, "only on a")
            resolved = resolve(room, [a.state, b.state])
            self.assertEqual(resolved, a.state, rv.identifier)
            self.assertEqual(resolved[TOPIC], topic.event_id)

    def test_fully_conflicted(self) -> None:
        """A state resolved against the empty state (every key conflicted) comes back whole."""
        for rv in ALL_V2:
            room = Room(rv)
            main = room.create(ALICE)
            main.join(BOB)
            main.join(DAVE)
            main.member(ALICE, CAROL, "invite")
            main.join(CAROL)
            main.power(ALICE, creator_levels(rv, bob=50))
            main.topic(BOB, "hello")
            main.member(BOB, DAVE, "leave")
            self.assertEqual(resolve(room, [main.state, {}]), main.state, rv.identifier)
            self.assertEqual(resolve(room, [{}, main.state]), main.state, rv.identifier)

    def test_fully_conflicted_join_rules_change_sorts_before_old_joins(self) -> None:
        """Fully conflicted, a later invite-only switch is applied before older public joins, which then fail.

        Bob joined while the room was public; the room later became
        invite-only. Against the empty state, Bob's join is in the full
        conflicted set (it is in the auth chain of his kick of Dave), but it
        sorts after the creator's join rules change (more power), so it is
        re-checked against invite-only rules and dropped: resolving against
        nothing is not a no-op.
        """
        for rv in ALL_V2:
            room = Room(rv)
            main = room.create(ALICE)
            main.join(BOB)
            main.join(DAVE)
            main.power(ALICE, creator_levels(rv, bob=50))
            kick = main.member(BOB, DAVE, "leave")
            invite_only = main.join_rules(ALICE, "invite")
            resolved = resolve(room, [main.state, {}])
            self.assertNotIn(member(BOB), resolved, rv.identifier)
            self.assertEqual(resolved[member(DAVE)], kick.event_id, rv.identifier)
            self.assertEqual(resolved[JOIN_RULES_KEY], invite_only.event_id, rv.identifier)


class PowerConflictTests(unittest.TestCase):
    def test_demotion_beats_ban_by_the_demoted_moderator(self) -> None:
        """The admin's demotion sorts first (more power), so the moderator's concurrent ban fails."""
        for rv in ALL_V2:
            room = Room(rv)
            main = room.create(ALICE, users={BOB: 50})
            main.join(BOB)
            carol_join = main.join(CAROL)
            a, b = main.branch(), main.branch()
            demote = a.power(ALICE, creator_levels(rv))
            b.member(BOB, CAROL, "ban")
            resolved = resolve(room, [a.state, b.state])
            self.assertEqual(resolved[POWER_KEY], demote.event_id, rv.identifier)
            self.assertEqual(resolved[member(CAROL)], carol_join.event_id, rv.identifier)

    def test_ban_beats_power_change_by_the_banned_moderator(self) -> None:
        """A ban of a moderator applies before the moderator's concurrent power levels change, which fails."""
        for rv in ALL_V2:
            room = Room(rv)
            main = room.create(ALICE, users={BOB: 50})
            main.join(BOB)
            main.join(DAVE)
            pl1 = main.state[POWER_KEY]
            a, b = main.branch(), main.branch()
            ban = a.member(ALICE, BOB, "ban")
            b.power(BOB, creator_levels(rv, bob=50, dave=10))
            resolved = resolve(room, [a.state, b.state])
            self.assertEqual(resolved[member(BOB)], ban.event_id, rv.identifier)
            self.assertEqual(resolved[POWER_KEY], pl1, rv.identifier)

    def test_mutual_bans(self) -> None:
        """Two admins each able to ban the other: the auth DAG, not the timestamps, decides who stays.

        Alice (100) bans Bob (50) on one fork; on the other Alice lowers
        herself to 40, after which Bob bans her. Bob's membership is
        conflicted, so his join sits in the full conflicted set: Alice's ban
        cites it and must sort after it, while her self-demotion (same power,
        no such dependency) is ready first. At 40 she can no longer ban, and
        Bob's ban of her applies, whichever of her two events is older.
        """
        for rv in V2_FAMILY:
            for self_demotion_first in (True, False):
                room = Room(rv)
                main = room.create(ALICE, users={BOB: 50})
                bob_join = main.join(BOB)
                a, b = main.branch(), main.branch()
                a.member(ALICE, BOB, "ban", ts=2000 if self_demotion_first else 1000)
                lower = b.power(ALICE, {ALICE: 40, BOB: 50}, ts=1000 if self_demotion_first else 2000)
                ban_alice = b.member(BOB, ALICE, "ban", ts=3000)
                resolved = resolve(room, [a.state, b.state])
                self.assertEqual(resolved[POWER_KEY], lower.event_id)
                self.assertEqual(resolved[member(BOB)], bob_join.event_id)
                self.assertEqual(resolved[member(ALICE)], ban_alice.event_id)

    def test_same_sender_power_levels_conflict(self) -> None:
        """Two power levels changes by the same admin: the later one wins, and what needed the other fails.

        The earlier change made Carol a moderator and she set the topic with
        it; the later one (concurrent) does not list her, so her topic fails
        and the older topic stays.
        """
        for rv in ALL_V2:
            room = Room(rv)
            main = room.create(ALICE, users={BOB: 50})
            main.join(BOB)
            main.join(CAROL)
            old_topic = main.topic(ALICE, "old")
            a, b = main.branch(), main.branch()
            a.power(ALICE, creator_levels(rv, bob=50, carol=50), ts=5000)
            a.topic(CAROL, "carol's", ts=5001)
            later = b.power(ALICE, creator_levels(rv, bob=50, dave=10), ts=5002)
            resolved = resolve(room, [a.state, b.state])
            self.assertEqual(resolved[POWER_KEY], later.event_id, rv.identifier)
            self.assertEqual(resolved[TOPIC], old_topic.event_id, rv.identifier)


class JoinRulesTests(unittest.TestCase):
    def test_join_rules_flip_beats_concurrent_join(self) -> None:
        """Public to invite-only concurrently with a join: the join rules apply first and the join fails."""
        for rv in ALL_V2:
            room = Room(rv)
            main = room.create(ALICE)
            main.join(BOB)
            a, b = main.branch(), main.branch()
            invite_only = a.join_rules(ALICE, "invite")
            b.join(DAVE)
            resolved = resolve(room, [a.state, b.state])
            self.assertEqual(resolved[JOIN_RULES_KEY], invite_only.event_id, rv.identifier)
            self.assertNotIn(member(DAVE), resolved, rv.identifier)

    def test_invited_join_survives_join_rules_flip(self) -> None:
        """A join that was invited stays valid when the room concurrently becomes invite-only."""
        for rv in ALL_V2:
            room = Room(rv)
            main = room.create(ALICE)
            main.member(ALICE, DAVE, "invite")
            a, b = main.branch(), main.branch()
            a.join_rules(ALICE, "invite")
            join = b.join(DAVE)
            resolved = resolve(room, [a.state, b.state])
            self.assertEqual(resolved[member(DAVE)], join.event_id, rv.identifier)


class TopicTests(unittest.TestCase):
    def _two_topics(self, rv: RoomVersion, ts_a: int, ts_b: int, name_a: str, name_b: str) -> tuple[Room, Fork, Fork]:
        room = Room(rv)
        main = room.create(ALICE)
        a, b = main.branch(), main.branch()
        a.topic(ALICE, "a", ts=ts_a, name=name_a)
        b.topic(ALICE, "b", ts=ts_b, name=name_b)
        return room, a, b

    def test_later_topic_wins(self) -> None:
        """Topics on the same mainline position: the later origin_server_ts is applied last and wins."""
        for rv in ALL_V2:
            room, a, b = self._two_topics(rv, 2000, 1000, "TA", "TB")
            self.assertEqual(resolve(room, [a.state, b.state])[TOPIC], a.state[TOPIC], rv.identifier)
            self.assertEqual(resolve(room, [b.state, a.state])[TOPIC], a.state[TOPIC], rv.identifier)

    def test_timestamp_tie_broken_by_event_id(self) -> None:
        """Same mainline position and timestamp: the larger event id sorts last and wins."""
        for rv in (RoomVersions.V10, RoomVersions.V12):
            room, a, b = self._two_topics(rv, 2000, 2000, "TZ", "TA")
            self.assertEqual(resolve(room, [a.state, b.state])[TOPIC], "$TZ", rv.identifier)
            room, a, b = self._two_topics(rv, 2000, 2000, "TA", "TZ")
            self.assertEqual(resolve(room, [a.state, b.state])[TOPIC], "$TZ", rv.identifier)

    def test_mainline_beats_timestamps(self) -> None:
        """A topic citing newer power levels wins over a later-stamped topic citing older ones."""
        for rv in ALL_V2:
            room = Room(rv)
            main = room.create(ALICE, users={BOB: 50})
            main.join(BOB)
            main.join(CAROL)
            a, b = main.branch(), main.branch()
            a.power(ALICE, creator_levels(rv, bob=50, carol=50), ts=5000)
            newer = a.topic(ALICE, "on new levels", ts=5001)
            b.topic(BOB, "on old levels", ts=9000)
            self.assertEqual(resolve(room, [a.state, b.state])[TOPIC], newer.event_id, rv.identifier)

    def test_topics_of_a_later_demoted_user(self) -> None:
        """Topics by a user demoted on one fork fail on both forks once the demotion is resolved in.

        With the two topics gone, nothing is left for the key: the earlier
        topic is neither in the state sets nor in any auth chain.
        """
        for rv in ALL_V2:
            room = Room(rv)
            main = room.create(ALICE, users={BOB: 50})
            main.join(BOB)
            main.topic(ALICE, "original")
            a, b = main.branch(), main.branch()
            a.topic(BOB, "bob on a", ts=5000)
            demote = a.power(ALICE, creator_levels(rv), ts=5001)
            b.topic(BOB, "bob on b", ts=5002)
            resolved = resolve(room, [a.state, b.state])
            self.assertEqual(resolved[POWER_KEY], demote.event_id, rv.identifier)
            self.assertNotIn(TOPIC, resolved, rv.identifier)


class RejectedEventsTests(unittest.TestCase):
    def _room(self, rv: RoomVersion, reject_join: bool) -> tuple[Room, Fork, Fork, str, str]:
        room = Room(rv)
        main = room.create(ALICE, users={BOB: 50})
        join = main.join(BOB)
        a, b = main.branch(), main.branch()
        old = b.topic(ALICE, "alice's", ts=5000)
        new = a.topic(BOB, "bob's", ts=6000)
        if reject_join:
            join.internal_metadata.rejected_reason = "auth_error"
        return room, a, b, old.event_id, new.event_id

    def test_event_with_rejected_auth_event(self) -> None:
        """An event whose needed auth event is rejected fails: the rejected event is never used for auth."""
        for rv in ALL_V2:
            room, a, b, old, new = self._room(rv, reject_join=True)
            self.assertEqual(resolve(room, [a.state, b.state])[TOPIC], old, rv.identifier)

    def test_same_room_without_rejection(self) -> None:
        """Control for the test above: with the auth event accepted, the later topic wins."""
        for rv in ALL_V2:
            room, a, b, old, new = self._room(rv, reject_join=False)
            self.assertEqual(resolve(room, [a.state, b.state])[TOPIC], new, rv.identifier)

    def test_rejected_conflicted_event_never_wins(self) -> None:
        """A rejected event in a state set is sorted but never applied."""
        for rv in ALL_V2:
            room = Room(rv)
            main = room.create(ALICE)
            a, b = main.branch(), main.branch()
            old = b.topic(ALICE, "accepted", ts=5000)
            bad = a.topic(ALICE, "rejected", ts=6000)
            bad.internal_metadata.rejected_reason = "auth_error"
            self.assertEqual(resolve(room, [a.state, b.state])[TOPIC], old.event_id, rv.identifier)

    def test_rejected_power_event_still_orders_its_children(self) -> None:
        """A rejected power event keeps its place in the power ordering (so events citing it wait for it).

        Y (by the creator) cites a rejected power levels event R sent by a low
        moderator; Z (by a mid moderator) is concurrent. Without R in the
        ordering Y would sort first and Z win; with R kept, Z sorts before R
        and Y, and Y wins.
        """
        room = Room(RoomVersions.V11)
        main = room.create(ALICE, users={CAROL: 50, DAVE: 25})
        main.join(CAROL)
        main.join(DAVE)
        a, b = main.branch(), main.branch()
        r = a.send("m.room.power_levels", DAVE, _levels({ALICE: 100, CAROL: 50, DAVE: 25, BOB: 5}), "", ts=5001)
        y = a.power(ALICE, {ALICE: 100, CAROL: 50, DAVE: 25, BOB: 1}, ts=5002)
        b.power(CAROL, {ALICE: 100, CAROL: 50, DAVE: 25, EVE: 2}, ts=5003)
        r.internal_metadata.rejected_reason = "auth_error"
        self.assertEqual(resolve(room, [a.state, b.state])[POWER_KEY], y.event_id)


def _levels(users: dict[str, int]) -> dict[str, object]:
    from tests.state.resolution_fixtures import power_levels

    return power_levels(users)


class V12Tests(unittest.TestCase):
    def test_creator_outranks_power_level_100(self) -> None:
        """v12: the creator's demotion of a PL-100 admin sorts first and the admin's concurrent change fails."""
        room = Room(RoomVersions.V12)
        main = room.create(ALICE, users={BOB: 100})
        main.join(BOB)
        a, b = main.branch(), main.branch()
        demote = a.power(ALICE, {}, ts=2000)
        b.power(BOB, {BOB: 100}, state_default=40, ts=1000)
        resolved = resolve(room, [a.state, b.state])
        self.assertEqual(resolved[POWER_KEY], demote.event_id)

    def test_additional_creators_are_privileged(self) -> None:
        """v12: an additional creator also outranks everyone listed in the power levels."""
        room = Room(RoomVersions.V12)
        main = room.create(ALICE, extra={"additional_creators": [CAROL]}, users={BOB: 100})
        main.join(BOB)
        main.join(CAROL)
        a, b = main.branch(), main.branch()
        demote = a.power(CAROL, {}, ts=2000)
        b.power(BOB, {BOB: 100}, state_default=40, ts=1000)
        self.assertEqual(resolve(room, [a.state, b.state])[POWER_KEY], demote.event_id)

    def test_create_event_is_implied(self) -> None:
        """v12 events never cite the create event; resolution still authorises them against it."""
        room = Room(RoomVersions.V12)
        main = room.create(ALICE)
        create_id = main.state[CREATE_KEY]
        self.assertTrue(all(create_id not in e.auth_event_ids() for e in room.events.values()))
        a, b = main.branch(), main.branch()
        join = a.join(BOB)
        b.topic(ALICE, "t")
        resolved = resolve(room, [a.state, b.state])
        self.assertEqual(resolved[member(BOB)], join.event_id)
        self.assertEqual(resolved[CREATE_KEY], create_id)

    def test_starts_from_empty_state(self) -> None:
        """v2.1 checks conflicted events against their own auth events, not the unconflicted state.

        Both forks agree Bob is now banned (unconflicted), but on one fork he
        set the topic before the ban. v2 checks his topic against the
        unconflicted ban and drops it; v2.1 starts from an empty state, so
        his topic is allowed by its own auth events and, being later, wins.
        """
        results = {}
        for rv in (RoomVersions.V11, RoomVersions.V12):
            room = Room(rv)
            main = room.create(ALICE, users={BOB: 50})
            main.join(BOB)
            a, b = main.branch(), main.branch()
            alices = b.topic(ALICE, "alice", ts=5000)
            bobs = a.topic(BOB, "bob", ts=6000)
            ban = a.member(ALICE, BOB, "ban", ts=7000)
            b.state[member(BOB)] = ban.event_id
            b.extremities.append(ban.event_id)
            results[rv.identifier] = resolve(room, [a.state, b.state])[TOPIC], alices.event_id, bobs.event_id
        self.assertEqual(results["11"][0], results["11"][1])
        self.assertEqual(results["12"][0], results["12"][2])

    def test_unconflicted_events_stay_out_of_the_auth_difference(self) -> None:
        """An event in every state set is in every full auth chain, even if only one fork cites it.

        Fork A lowers Bob's level and then sets a topic citing the new levels;
        fork B has Bob's topic (citing the old levels) and also took the new
        levels. The new levels are unconflicted, so in v2.1 they are not in the
        partial state and Bob's later topic, allowed by its own auth events,
        wins; if they entered the auth difference, the mainline would put
        Bob's topic first and the demotion would reject it.
        """
        results = {}
        for rv in (RoomVersions.V11, RoomVersions.V12):
            room = Room(rv)
            main = room.create(ALICE, users={BOB: 50})
            main.join(BOB)
            a, b = main.branch(), main.branch()
            demote = a.power(ALICE, creator_levels(rv), ts=2000)
            alices = a.topic(ALICE, "alice", ts=2001)
            bobs = b.topic(BOB, "bob", ts=2002)
            b.state[POWER_KEY] = demote.event_id
            b.extremities.append(demote.event_id)
            results[rv.identifier] = resolve(room, [a.state, b.state])[TOPIC], alices.event_id, bobs.event_id
        self.assertEqual(results["11"][0], results["11"][1])
        self.assertEqual(results["12"][0], results["12"][2])
