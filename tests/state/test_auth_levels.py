"""Power level helpers handlers use: user levels, required levels, named levels, creators."""

from __future__ import annotations

import math

from twisted.trial import unittest

from matrixd.events.room_versions import RoomVersion, RoomVersions
from matrixd.state.auth import (
    can_send_event,
    can_trigger_notification,
    get_membership,
    get_named_level,
    get_notification_level,
    get_required_level_for_event,
    get_room_creators,
    get_user_power_level,
    is_privileged_creator,
    user_has_named_level,
)
from tests.state.auth_factory import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    DAVE,
    RoomBuilder,
    expand,
    for_room_versions,
    joined_room,
    versions_where,
)

PRIVILEGED = versions_where(lambda v: v.privileged_creators)
UNPRIVILEGED = versions_where(lambda v: not v.privileged_creators)
EXPLICIT_CREATOR = versions_where(lambda v: not v.implicit_room_creator)


@expand
class UserPowerLevelTests(unittest.TestCase):
    @for_room_versions(UNPRIVILEGED)
    def test_no_power_levels_creator_100(self, rv: RoomVersion) -> None:
        """v1-v11 without power levels: the creator has 100, everyone else 0."""
        room = RoomBuilder(rv)
        self.assertEqual(get_user_power_level(rv, ALICE, room.state), 100)
        self.assertEqual(get_user_power_level(rv, BOB, room.state), 0)

    @for_room_versions(EXPLICIT_CREATOR)
    def test_creator_field_before_v11(self, rv: RoomVersion) -> None:
        """v1-v10: content.creator, not the sender, gets 100 without power levels."""
        room = RoomBuilder(rv, creator=ALICE, create_content={"creator": DAVE})
        self.assertEqual(get_user_power_level(rv, DAVE, room.state), 100)
        self.assertEqual(get_user_power_level(rv, ALICE, room.state), 0)

    def test_v11_sender_is_creator(self) -> None:
        """v11: the sender gets 100 without power levels; content.creator is ignored."""
        rv = RoomVersions.V11
        room = RoomBuilder(rv, create_content={"creator": DAVE})
        self.assertEqual(get_user_power_level(rv, ALICE, room.state), 100)
        self.assertEqual(get_user_power_level(rv, DAVE, room.state), 0)

    @for_room_versions(PRIVILEGED)
    def test_v12_creators_infinite(self, rv: RoomVersion) -> None:
        """v12: creators and additional creators are infinite, with or without power levels."""
        room = RoomBuilder(rv, create_content={"additional_creators": [BOB]})
        for user in (ALICE, BOB):
            self.assertEqual(get_user_power_level(rv, user, room.state), math.inf)
        self.assertEqual(get_user_power_level(rv, CAROL, room.state), 0)
        room.join(ALICE)
        room.power_levels({"users": {CAROL: 75}, "users_default": 5})
        self.assertEqual(get_user_power_level(rv, ALICE, room.state), math.inf)
        self.assertEqual(get_user_power_level(rv, BOB, room.state), math.inf)
        self.assertEqual(get_user_power_level(rv, CAROL, room.state), 75)
        self.assertEqual(get_user_power_level(rv, DAVE, room.state), 5)

    @for_room_versions(PRIVILEGED)
    def test_v12_create_from_parameter(self, rv: RoomVersion) -> None:
        """v12: the create event may be given when the state map lacks it."""
        room = RoomBuilder(rv)
        self.assertEqual(get_user_power_level(rv, ALICE, {}, room.create_event), math.inf)
        self.assertEqual(get_user_power_level(rv, ALICE, {}), 0)

    @for_room_versions(ALL_VERSIONS)
    def test_users_and_users_default(self, rv: RoomVersion) -> None:
        """users entries win; others get users_default (0 if absent)."""
        room = joined_room(rv, users={BOB: 42}, users_default=7)
        self.assertEqual(get_user_power_level(rv, BOB, room.state), 42)
        self.assertEqual(get_user_power_level(rv, CAROL, room.state), 7)
        room.power_levels({"users": {BOB: 42}})
        self.assertEqual(get_user_power_level(rv, CAROL, room.state), 0)
        if not rv.privileged_creators:
            self.assertEqual(get_user_power_level(rv, ALICE, room.state), 0)

    @for_room_versions(versions_where(lambda v: not v.enforce_int_power_levels))
    def test_unreadable_entry_falls_back(self, rv: RoomVersion) -> None:
        """v1-v9: an unreadable users entry falls back to users_default; strings are read."""
        room = RoomBuilder(rv)
        room.power_levels({"users": {BOB: "x", CAROL: "12"}, "users_default": "3"})
        self.assertEqual(get_user_power_level(rv, BOB, room.state), 3)
        self.assertEqual(get_user_power_level(rv, CAROL, room.state), 12)


@expand
class RequiredLevelTests(unittest.TestCase):
    @for_room_versions(ALL_VERSIONS)
    def test_defaults_without_power_levels(self, rv: RoomVersion) -> None:
        """Without power levels: state 50, messages 0."""
        self.assertEqual(get_required_level_for_event(rv, "m.room.topic", True, None), 50)
        self.assertEqual(get_required_level_for_event(rv, "m.room.message", False, None), 0)

    @for_room_versions(ALL_VERSIONS)
    def test_defaults_within_power_levels(self, rv: RoomVersion) -> None:
        """Absent state_default/events_default mean 50/0; present ones apply."""
        self.assertEqual(get_required_level_for_event(rv, "x", True, {}), 50)
        self.assertEqual(get_required_level_for_event(rv, "x", False, {}), 0)
        content = {"state_default": 20, "events_default": 5, "events": {"x": 70}}
        self.assertEqual(get_required_level_for_event(rv, "y", True, content), 20)
        self.assertEqual(get_required_level_for_event(rv, "y", False, content), 5)
        self.assertEqual(get_required_level_for_event(rv, "x", True, content), 70)
        self.assertEqual(get_required_level_for_event(rv, "x", False, content), 70)

    @for_room_versions(ALL_VERSIONS)
    def test_malformed_events(self, rv: RoomVersion) -> None:
        """A non-object events, or an unreadable entry, falls back to the defaults."""
        self.assertEqual(get_required_level_for_event(rv, "x", True, {"events": [1]}), 50)
        self.assertEqual(get_required_level_for_event(rv, "x", False, {"events": {"x": None}}), 0)

    @for_room_versions(ALL_VERSIONS)
    def test_named_levels(self, rv: RoomVersion) -> None:
        """invite defaults to 0; kick, ban and redact to 50; set values win."""
        for name, default in (("invite", 0), ("kick", 50), ("ban", 50), ("redact", 50)):
            self.assertEqual(get_named_level(rv, name, None), default)
            self.assertEqual(get_named_level(rv, name, {}), default)
            self.assertEqual(get_named_level(rv, name, {name: 9}), 9)

    @for_room_versions(ALL_VERSIONS)
    def test_notification_levels(self, rv: RoomVersion) -> None:
        """notifications.room defaults to 50."""
        self.assertEqual(get_notification_level(rv, "room", None), 50)
        self.assertEqual(get_notification_level(rv, "room", {"notifications": "x"}), 50)
        self.assertEqual(get_notification_level(rv, "room", {"notifications": {"room": 3}}), 3)


@expand
class CreatorsAndPermissionTests(unittest.TestCase):
    @for_room_versions(ALL_VERSIONS)
    def test_room_creators(self, rv: RoomVersion) -> None:
        """Creators: content.creator (v1-v10), the sender (v11), sender plus additional_creators (v12)."""
        room = RoomBuilder(rv, create_content={"creator": DAVE, "additional_creators": [BOB]})
        expected = {DAVE} if not rv.implicit_room_creator else {ALICE} if not rv.privileged_creators else {ALICE, BOB}
        self.assertEqual(get_room_creators(rv, room.create_event), expected)
        self.assertEqual(get_room_creators(rv, None), set())
        self.assertEqual(is_privileged_creator(rv, BOB, room.create_event), rv.privileged_creators)

    @for_room_versions(ALL_VERSIONS)
    def test_can_send_event(self, rv: RoomVersion) -> None:
        """can_send_event compares the user's level to the required level."""
        room = joined_room(rv, members=[BOB], events={"m.room.message": 10})
        self.assertFalse(can_send_event(rv, BOB, "m.room.message", False, room.state))
        self.assertTrue(can_send_event(rv, BOB, "m.reaction", False, room.state))
        self.assertTrue(can_send_event(rv, ALICE, "m.room.topic", True, room.state))
        self.assertFalse(can_send_event(rv, BOB, "m.room.topic", True, room.state))

    @for_room_versions(ALL_VERSIONS)
    def test_named_level_and_notifications(self, rv: RoomVersion) -> None:
        """user_has_named_level and can_trigger_notification use the defaults and the state."""
        room = joined_room(rv, members=[BOB])
        self.assertTrue(user_has_named_level(rv, BOB, "invite", room.state))
        self.assertFalse(user_has_named_level(rv, BOB, "ban", room.state))
        self.assertTrue(user_has_named_level(rv, ALICE, "ban", room.state))
        self.assertFalse(can_trigger_notification(rv, BOB, "room", room.state))
        self.assertTrue(can_trigger_notification(rv, ALICE, "room", room.state))

    @for_room_versions(ALL_VERSIONS)
    def test_get_membership(self, rv: RoomVersion) -> None:
        """get_membership reads the member event, None when absent."""
        room = joined_room(rv, members=[BOB])
        self.assertEqual(get_membership(room.state, BOB), "join")
        self.assertIsNone(get_membership(room.state, CAROL))
