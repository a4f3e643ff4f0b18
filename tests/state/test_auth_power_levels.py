"""The m.room.power_levels rule: shape (strings, floats, v10 integers), v12 creators, and changes."""

from __future__ import annotations

import copy
from typing import Any

from twisted.trial import unittest

from matrixd.events.room_versions import RoomVersion, RoomVersions
from matrixd.state.auth import parse_level
from tests.state.auth_factory import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    DAVE,
    DROP,
    AuthAssertions,
    RoomBuilder,
    default_power_levels,
    expand,
    for_room_versions,
    joined_room,
    versions_where,
)

STRINGY = versions_where(lambda v: not v.enforce_int_power_levels)
INT_ONLY = versions_where(lambda v: v.enforce_int_power_levels)
FLOATY = versions_where(lambda v: not v.strict_canonicaljson)
STRICT_JSON = versions_where(lambda v: v.strict_canonicaljson)
NOTIFICATIONS = versions_where(lambda v: v.limit_notifications_power_levels)
NO_NOTIFICATIONS = versions_where(lambda v: not v.limit_notifications_power_levels)
PRIVILEGED = versions_where(lambda v: v.privileged_creators)
UNPRIVILEGED = versions_where(lambda v: not v.privileged_creators)


@expand
class ParseLevelTests(unittest.TestCase):
    @for_room_versions(ALL_VERSIONS)
    def test_integers(self, rv: RoomVersion) -> None:
        """Integers are themselves in every version; booleans are not integers."""
        for value in (0, 50, -7, 2**53 - 1):
            self.assertEqual(parse_level(rv, value), value)
        self.assertIsNone(parse_level(rv, True))
        self.assertIsNone(parse_level(rv, None))
        self.assertIsNone(parse_level(rv, [5]))

    @for_room_versions(STRINGY)
    def test_integer_strings_before_v10(self, rv: RoomVersion) -> None:
        """v1-v9: strings holding a base-10 integer, with sign, zeros and whitespace, are read."""
        cases = {"100": 100, "000100": 100, "+100": 100, "-100": -100, " 100 ": 100, " \t-0100\n": -100}
        for text, level in cases.items():
            self.assertEqual(parse_level(rv, text), level, text)
        for text in ("", " ", "1.5", "1e3", "0x10", "1_000", "ten", "+-1", "٣", "１"):
            self.assertIsNone(parse_level(rv, text), text)

    @for_room_versions(INT_ONLY)
    def test_no_strings_from_v10(self, rv: RoomVersion) -> None:
        """v10+: strings are not levels."""
        self.assertIsNone(parse_level(rv, "50"))

    @for_room_versions(FLOATY)
    def test_floats_truncate_before_v6(self, rv: RoomVersion) -> None:
        """v1-v5: finite floats are truncated toward zero; non-finite ones are unreadable."""
        self.assertEqual(parse_level(rv, 50.57), 50)
        self.assertEqual(parse_level(rv, 5.114698e4), 51146)
        self.assertEqual(parse_level(rv, -1.9), -1)
        for value in (float("inf"), float("-inf"), float("nan")):
            self.assertIsNone(parse_level(rv, value))

    @for_room_versions(STRICT_JSON)
    def test_no_floats_from_v6(self, rv: RoomVersion) -> None:
        """v6+: floats are not levels."""
        self.assertIsNone(parse_level(rv, 50.0))


@expand
class PowerLevelsShapeTests(unittest.TestCase, AuthAssertions):
    def _pl(self, room: RoomBuilder, sender: str = ALICE, **overrides: Any) -> Any:
        content = default_power_levels(room.room_version, **overrides)
        return room.make("m.room.power_levels", sender, content, state_key="")

    @for_room_versions(ALL_VERSIONS)
    def test_first_power_levels_by_creator(self, rv: RoomVersion) -> None:
        """The creator may send the first power levels event."""
        room = RoomBuilder(rv)
        room.join(ALICE)
        self.assertAllowed(room, self._pl(room))

    @for_room_versions(ALL_VERSIONS)
    def test_first_power_levels_by_member_rejected(self, rv: RoomVersion) -> None:
        """Without power levels, state_default is 50 and a member (0) cannot send them."""
        room = RoomBuilder(rv)
        room.join(ALICE)
        room.join_rules("public")
        room.join(BOB)
        self.assertRejected(room, self._pl(room, BOB, users={}), "needs power level 50")

    @for_room_versions(ALL_VERSIONS)
    def test_users_must_be_object_of_user_ids(self, rv: RoomVersion) -> None:
        """users must be an object keyed by user ids."""
        room = joined_room(rv)
        self.assertRejected(room, self._pl(room, users=[ALICE]), "users must be an object")
        for bad in ("alice", "@alice", "@alice:", "@alice:bad host", "#room:a.example"):
            self.assertRejected(room, self._pl(room, users={bad: 10}), "invalid user id")

    @for_room_versions(ALL_VERSIONS)
    def test_users_may_be_absent(self, rv: RoomVersion) -> None:
        """A power levels event without users is accepted (treated as empty)."""
        room = joined_room(rv)
        content = default_power_levels(rv)
        del content["users"]
        self.assertAllowed(room, room.make("m.room.power_levels", ALICE, content, state_key=""))

    @for_room_versions(ALL_VERSIONS)
    def test_users_values_must_be_integers(self, rv: RoomVersion) -> None:
        """users values must be integers (or integer strings before v10)."""
        room = joined_room(rv)
        for bad in ("ten", None, True, [1], {"a": 1}, "1.5"):
            self.assertRejected(room, self._pl(room, users={BOB: bad}), "is not an integer")

    @for_room_versions(STRINGY)
    def test_string_values_accepted_before_v10(self, rv: RoomVersion) -> None:
        """v1-v9: integer strings are accepted anywhere, and garbage outside users is tolerated."""
        room = joined_room(rv)
        self.assertAllowed(room, self._pl(room, users={BOB: " 50 "}, ban="50", events={"m.room.name": "+50"}))
        self.assertAllowed(room, self._pl(room, kick="lots", events={"m.room.name": [1]}))

    @for_room_versions(INT_ONLY)
    def test_v10_named_levels_must_be_integers(self, rv: RoomVersion) -> None:
        """v10+: users_default, events_default, state_default, ban, redact, kick, invite must be integers."""
        room = joined_room(rv)
        for key in ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"):
            for bad in ("50", 50.0, True, None):
                override: dict[str, Any] = {key: bad}
                self.assertRejected(room, self._pl(room, **override), f"{key} must be an integer")

    @for_room_versions(INT_ONLY)
    def test_v10_events_and_notifications_must_be_integer_objects(self, rv: RoomVersion) -> None:
        """v10+: events and notifications must be objects whose values are integers."""
        room = joined_room(rv)
        for name in ("events", "notifications"):
            bad_values: list[Any] = [[], "x", {"m.room.name": "50"}, {"room": True}]
            for bad in bad_values:
                override: dict[str, Any] = {name: bad}
                self.assertRejected(room, self._pl(room, **override), f"{name} must be an object of integers")
        self.assertAllowed(room, self._pl(room, notifications={"room": 50}))

    @for_room_versions(INT_ONLY)
    def test_v10_users_strings_rejected(self, rv: RoomVersion) -> None:
        """v10+: a string value in users is rejected."""
        room = joined_room(rv)
        self.assertRejected(room, self._pl(room, users={BOB: "50"}), "is not an integer")

    @for_room_versions(FLOATY)
    def test_floats_before_v6(self, rv: RoomVersion) -> None:
        """v1-v5: finite floats are accepted; Infinity and NaN anywhere reject the event."""
        room = joined_room(rv)
        self.assertAllowed(room, self._pl(room, users={ALICE: 100, BOB: 50.57}))
        for overrides in (
            {"ban": float("inf")},
            {"events": {"m.room.name": float("-inf")}},
            {"users": {ALICE: 100, BOB: float("nan")}},
            {"notifications": {"room": float("inf")}},
        ):
            self.assertRejected(room, self._pl(room, **overrides), "non-finite")

    @for_room_versions(STRICT_JSON)
    def test_float_user_levels_rejected_from_v6(self, rv: RoomVersion) -> None:
        """v6+: a float in users is not an integer."""
        room = joined_room(rv)
        self.assertRejected(room, self._pl(room, users={ALICE: 100, BOB: 50.5}), "is not an integer")

    @for_room_versions(PRIVILEGED)
    def test_v12_creators_not_in_users(self, rv: RoomVersion) -> None:
        """v12: users may not list the creator or an additional creator, even at their current state."""
        room = RoomBuilder(rv, create_content={"additional_creators": [BOB]})
        room.join(ALICE)
        for user in (ALICE, BOB):
            event = room.make("m.room.power_levels", ALICE, {"users": {user: 100}}, state_key="")
            self.assertRejected(room, event, f"room creator {user}")
        self.assertAllowed(room, room.make("m.room.power_levels", ALICE, {"users": {CAROL: 100}}, state_key=""))

    @for_room_versions(versions_where(lambda v: v.implicit_room_creator and not v.privileged_creators))
    def test_v11_creator_may_be_listed(self, rv: RoomVersion) -> None:
        """v11: listing the creator in users is fine."""
        room = RoomBuilder(rv)
        room.join(ALICE)
        self.assertAllowed(room, self._pl(room))


@expand
class PowerLevelsChangeTests(unittest.TestCase, AuthAssertions):
    """BOB is a moderator at 50 who may send power levels; DAVE also 50; CAROL 0; ALICE 100."""

    def _room(self, rv: RoomVersion, users: Any = None, **overrides: Any) -> RoomBuilder:
        content: dict[str, Any] = {"events": {"m.room.power_levels": 50, "m.room.tombstone": 100}}
        content.update(overrides)
        users = {BOB: 50, DAVE: 50, CAROL: 0, **(users or {})}
        return joined_room(rv, members=[BOB, DAVE, CAROL], users=users, **content)

    def _change(self, room: RoomBuilder, sender: str = BOB, **changes: Any) -> Any:
        content = dict(room.state[("m.room.power_levels", "")].content)
        for key, value in changes.items():
            if value is DROP:
                content.pop(key, None)
            else:
                content[key] = value
        return room.make("m.room.power_levels", sender, content, state_key="")

    def _users(self, room: RoomBuilder, **updates: Any) -> dict[str, Any]:
        users = dict(room.state[("m.room.power_levels", "")].content["users"])
        for user, value in updates.items():
            user_id = {"bob": BOB, "dave": DAVE, "carol": CAROL, "alice": ALICE}[user]
            if value is DROP:
                users.pop(user_id, None)
            else:
                users[user_id] = value
        return users

    def _events(self, room: RoomBuilder, **updates: Any) -> dict[str, Any]:
        events = dict(room.state[("m.room.power_levels", "")].content["events"])
        for key, value in updates.items():
            name = key.replace("_", ".")
            if value is DROP:
                events.pop(name, None)
            else:
                events[name] = value
        return events

    @for_room_versions(ALL_VERSIONS)
    def test_unchanged_resend_allowed(self, rv: RoomVersion) -> None:
        """Re-sending the same power levels is allowed for anyone who may send them."""
        room = self._room(rv)
        self.assertAllowed(room, self._change(room))

    @for_room_versions(ALL_VERSIONS)
    def test_sender_needs_send_level(self, rv: RoomVersion) -> None:
        """A member below events['m.room.power_levels'] cannot send power levels at all."""
        room = self._room(rv)
        self.assertRejected(room, self._change(room, CAROL), "needs power level 50")

    @for_room_versions(ALL_VERSIONS)
    def test_named_levels(self, rv: RoomVersion) -> None:
        """Named levels may move only within the sender's level, before and after."""
        room = self._room(rv, kick=75)
        self.assertAllowed(room, self._change(room, ban=40))
        self.assertAllowed(room, self._change(room, ban=50))
        self.assertRejected(room, self._change(room, ban=51), "cannot set ban to 51")
        self.assertRejected(room, self._change(room, kick=10), "cannot change kick from 75")
        self.assertRejected(room, self._change(room, kick=DROP), "cannot change kick from 75")
        self.assertAllowed(room, self._change(room, ban=DROP))

    @for_room_versions(ALL_VERSIONS)
    def test_adding_named_level(self, rv: RoomVersion) -> None:
        """Adding an absent named level checks only the new value, not the default."""
        room = self._room(rv, redact=DROP, state_default=DROP)
        self.assertAllowed(room, self._change(room, redact=50))
        self.assertRejected(room, self._change(room, redact=51), "cannot set redact to 51")
        self.assertAllowed(room, self._change(room, state_default=0))

    @for_room_versions(ALL_VERSIONS)
    def test_every_named_level_guarded(self, rv: RoomVersion) -> None:
        """Each of the seven named levels is protected."""
        room = self._room(rv)
        for key in ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"):
            override: dict[str, Any] = {key: 60}
            self.assertRejected(room, self._change(room, **override), f"cannot set {key} to 60")

    @for_room_versions(ALL_VERSIONS)
    def test_events_entries(self, rv: RoomVersion) -> None:
        """events entries may be added, changed or removed only within the sender's level."""
        room = self._room(rv)
        self.assertAllowed(room, self._change(room, events=self._events(room, m_room_topic=50)))
        self.assertRejected(room, self._change(room, events=self._events(room, m_room_topic=60)), "to 60")
        self.assertAllowed(room, self._change(room, events=self._events(room, m_room_power_levels=40)))
        self.assertRejected(
            room, self._change(room, events=self._events(room, m_room_tombstone=DROP)), "from 100"
        )
        self.assertRejected(room, self._change(room, events=self._events(room, m_room_tombstone=10)), "from 100")
        self.assertRejected(room, self._change(room, events=DROP), "from 100")

    @for_room_versions(NOTIFICATIONS)
    def test_notifications_guarded_from_v6(self, rv: RoomVersion) -> None:
        """v6+: notifications entries follow the same rules as events."""
        room = self._room(rv, notifications={"room": 100})
        self.assertRejected(room, self._change(room, notifications={"room": 50}), "notifications['room'] from 100")
        self.assertRejected(room, self._change(room, notifications={}), "notifications['room'] from 100")
        room = self._room(rv, notifications={"room": 20})
        self.assertRejected(room, self._change(room, notifications={"room": 60}), "notifications['room'] to 60")
        self.assertAllowed(room, self._change(room, notifications={"room": 50}))

    @for_room_versions(NO_NOTIFICATIONS)
    def test_notifications_unguarded_before_v6(self, rv: RoomVersion) -> None:
        """v1-v5: notifications are not part of the auth rules."""
        room = self._room(rv, notifications={"room": 100})
        self.assertAllowed(room, self._change(room, notifications={"room": 0}))
        self.assertAllowed(room, self._change(room, notifications={"room": 1000}))

    @for_room_versions(ALL_VERSIONS)
    def test_users_entries(self, rv: RoomVersion) -> None:
        """Others' entries must be below the sender before; new values at most the sender's."""
        room = self._room(rv)
        self.assertAllowed(room, self._change(room, users=self._users(room, carol=50)))
        self.assertRejected(room, self._change(room, users=self._users(room, carol=51)), "level 51")
        self.assertRejected(room, self._change(room, users=self._users(room, dave=0)), f"level of {DAVE} (50)")
        self.assertRejected(room, self._change(room, users=self._users(room, dave=DROP)), f"level of {DAVE}")
        if rv.privileged_creators:
            self.assertRejected(room, self._change(room, users=self._users(room, alice=0)), "room creator")
        else:
            self.assertRejected(room, self._change(room, users=self._users(room, alice=0)), f"level of {ALICE}")
        self.assertAllowed(room, self._change(room, users=self._users(room, carol=DROP)))
        self.assertAllowed(room, self._change(room, users={**self._users(room), "@new:n.example": 50}))

    @for_room_versions(ALL_VERSIONS)
    def test_own_entry(self, rv: RoomVersion) -> None:
        """The sender may lower or remove their own entry, but not raise it."""
        room = self._room(rv)
        self.assertAllowed(room, self._change(room, users=self._users(room, bob=10)))
        self.assertAllowed(room, self._change(room, users=self._users(room, bob=DROP)))
        self.assertRejected(room, self._change(room, users=self._users(room, bob=51)), "level 51")

    @for_room_versions(UNPRIVILEGED)
    def test_top_user_may_change_equal_named_levels(self, rv: RoomVersion) -> None:
        """Alice at 100 may set anything up to 100 but nothing above."""
        room = self._room(rv)
        self.assertAllowed(room, self._change(room, ALICE, ban=100, users=self._users(room, dave=100)))
        self.assertRejected(room, self._change(room, ALICE, ban=101), "cannot set ban to 101")

    @for_room_versions(STRINGY)
    def test_string_and_integer_forms_are_the_same_level(self, rv: RoomVersion) -> None:
        """v1-v9: replacing "75" by 75 is not a change, so a lower sender may do it."""
        room = self._room(rv, kick="75", users={DAVE: "50"})
        self.assertAllowed(room, self._change(room, kick=75))
        self.assertAllowed(room, self._change(room, users=self._users(room, dave=50)))
        self.assertRejected(room, self._change(room, kick=74), "from 75")

    @for_room_versions(STRINGY)
    def test_unreadable_old_value_counts_as_absent(self, rv: RoomVersion) -> None:
        """v1-v9: an unreadable old named level is treated as absent, so only the new value is checked."""
        room = self._room(rv, kick="lots")
        self.assertAllowed(room, self._change(room, kick=50))
        self.assertRejected(room, self._change(room, kick=60), "cannot set kick to 60")

    @for_room_versions(PRIVILEGED)
    def test_v12_creator_changes_anything(self, rv: RoomVersion) -> None:
        """v12: a creator's infinite level allows any values."""
        room = RoomBuilder(rv, create_content={"additional_creators": [DAVE]})
        room.join(ALICE)
        room.power_levels({"users": {BOB: 100}, "ban": 100})
        self.assertAllowed(room, self._change(room, ALICE, ban=2**53 - 1, users={BOB: 2**53 - 1}))
        room.join(DAVE)
        self.assertAllowed(room, self._change(room, DAVE, users={}))

    @for_room_versions(PRIVILEGED)
    def test_v12_top_user_below_creators(self, rv: RoomVersion) -> None:
        """v12: a level-100 user is bound by the usual rules."""
        room = RoomBuilder(rv)
        room.join(ALICE)
        room.power_levels({"users": {BOB: 100}, "events": {"m.room.power_levels": 100}})
        room.join_rules("public")
        room.join(BOB)
        self.assertAllowed(room, self._change(room, BOB, users={BOB: 100, CAROL: 100}))
        self.assertRejected(room, self._change(room, BOB, users={BOB: 101}), "level 101")


class NoPowerLevelsTests(unittest.TestCase, AuthAssertions):
    def test_v1_creator_field_gets_100(self) -> None:
        """v1: without power levels the content.creator (not the sender) has level 100."""
        room = RoomBuilder(RoomVersions.V1, creator=ALICE, create_content={"creator": DAVE})
        room.join(DAVE)
        event = room.make("m.room.power_levels", DAVE, {"users": {DAVE: 100}}, state_key="")
        self.assertAllowed(room, event)


class ShapeCacheTests(unittest.TestCase, AuthAssertions):
    def test_failures_are_not_cached(self) -> None:
        """An invalid power levels event is rejected every time it is checked."""
        room = joined_room(RoomVersions.V10)
        event = room.make("m.room.power_levels", ALICE, {"users": {BOB: "50"}}, state_key="")
        for _ in range(2):
            self.assertRejected(room, event, "is not an integer")

    def test_cache_is_per_room_version(self) -> None:
        """Content valid in v9 (integer strings) is still rejected when checked as v10."""
        content = {"users": {ALICE: "100"}}
        v9 = RoomBuilder(RoomVersions.V9)
        v9.join(ALICE)
        self.assertAllowed(v9, v9.make("m.room.power_levels", ALICE, content, state_key=""))
        v10 = RoomBuilder(RoomVersions.V10)
        v10.join(ALICE)
        self.assertRejected(v10, v10.make("m.room.power_levels", ALICE, content, state_key=""), "not an integer")

    def test_checks_do_not_mutate(self) -> None:
        """Checking a power levels change leaves the event and the state untouched."""
        room = joined_room(RoomVersions.V1, members=[BOB], users={BOB: "50"}, ban="40")
        before = copy.deepcopy({k: v.get_pdu_json() for k, v in room.state.items()})
        content = copy.deepcopy(room.state[("m.room.power_levels", "")].content)
        content["users"][CAROL] = 10
        event = room.make("m.room.power_levels", ALICE, content, state_key="")
        pdu_before = copy.deepcopy(event.get_pdu_json())
        self.assertAllowed(room, event)
        self.assertEqual({k: v.get_pdu_json() for k, v in room.state.items()}, before)
        self.assertEqual(event.get_pdu_json(), pdu_before)
