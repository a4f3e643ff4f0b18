"""Auth events selection per room version."""

from __future__ import annotations

from twisted.trial import unittest

from matrixd.events.room_versions import RoomVersion, RoomVersions
from matrixd.state.auth import auth_types_for_event
from tests.state.auth_factory import ALICE, ALL_VERSIONS, BOB, CAROL, RoomBuilder, expand, for_room_versions

CREATE = ("m.room.create", "")
PL = ("m.room.power_levels", "")
JR = ("m.room.join_rules", "")


def _base(rv: RoomVersion) -> list[tuple[str, str]]:
    return [PL] if rv.room_id_is_create_event_hash else [CREATE, PL]


@expand
class AuthTypesForEventTests(unittest.TestCase):
    @for_room_versions(ALL_VERSIONS)
    def test_create_event_selects_nothing(self, rv: RoomVersion) -> None:
        """The create event has no auth events."""
        room = RoomBuilder(rv)
        self.assertEqual(auth_types_for_event(rv, room.create_event), [])

    @for_room_versions(ALL_VERSIONS)
    def test_message(self, rv: RoomVersion) -> None:
        """A message selects create (not from v12), power levels and the sender's membership."""
        room = RoomBuilder(rv)
        event = room.make("m.room.message", BOB, {"body": "hi"})
        self.assertEqual(auth_types_for_event(rv, event), _base(rv) + [("m.room.member", BOB)])

    @for_room_versions(ALL_VERSIONS)
    def test_server_acl_is_not_an_auth_event(self, rv: RoomVersion) -> None:
        """m.room.server_acl is never selected, neither for itself nor for other events."""
        room = RoomBuilder(rv)
        acl = room.make("m.room.server_acl", ALICE, {"allow": ["*"]}, state_key="")
        message = room.make("m.room.message", ALICE, {})
        for event in (acl, message):
            self.assertNotIn(("m.room.server_acl", ""), auth_types_for_event(rv, event))
        self.assertEqual(auth_types_for_event(rv, acl), _base(rv) + [("m.room.member", ALICE)])

    @for_room_versions(ALL_VERSIONS)
    def test_own_join_dedupes_sender_and_target(self, rv: RoomVersion) -> None:
        """A self-join lists the user's member event once, then the join rules."""
        room = RoomBuilder(rv)
        event = room.member_event(BOB, BOB, "join")
        self.assertEqual(auth_types_for_event(rv, event), _base(rv) + [("m.room.member", BOB), JR])

    @for_room_versions(ALL_VERSIONS)
    def test_invite_selects_target_and_join_rules(self, rv: RoomVersion) -> None:
        """An invite selects sender, target and the join rules."""
        room = RoomBuilder(rv)
        event = room.member_event(ALICE, BOB, "invite")
        self.assertEqual(
            auth_types_for_event(rv, event), _base(rv) + [("m.room.member", ALICE), ("m.room.member", BOB), JR]
        )

    @for_room_versions(ALL_VERSIONS)
    def test_leave_and_ban_do_not_select_join_rules(self, rv: RoomVersion) -> None:
        """Leave and ban select sender and target but not the join rules."""
        room = RoomBuilder(rv)
        for membership in ("leave", "ban"):
            event = room.member_event(ALICE, BOB, membership)
            self.assertEqual(
                auth_types_for_event(rv, event), _base(rv) + [("m.room.member", ALICE), ("m.room.member", BOB)]
            )

    @for_room_versions(ALL_VERSIONS)
    def test_knock_selects_join_rules(self, rv: RoomVersion) -> None:
        """A knock selects the join rules (in every version; older ones then reject it)."""
        room = RoomBuilder(rv)
        event = room.member_event(BOB, BOB, "knock")
        self.assertIn(JR, auth_types_for_event(rv, event))

    @for_room_versions(ALL_VERSIONS)
    def test_third_party_invite_selects_token(self, rv: RoomVersion) -> None:
        """An invite with third_party_invite selects the m.room.third_party_invite of its token."""
        room = RoomBuilder(rv)
        event = room.member_event(
            ALICE, BOB, "invite", {"third_party_invite": {"display_name": "b", "signed": {"mxid": BOB, "token": "tok"}}}
        )
        self.assertEqual(auth_types_for_event(rv, event)[-1], ("m.room.third_party_invite", "tok"))

    @for_room_versions(ALL_VERSIONS)
    def test_malformed_third_party_invite_selects_no_token(self, rv: RoomVersion) -> None:
        """A third_party_invite without a string signed.token selects no third-party invite event."""
        room = RoomBuilder(rv)
        for tpi in ({}, {"signed": "x"}, {"signed": {"token": 5}}, "x"):
            event = room.member_event(ALICE, BOB, "invite", {"third_party_invite": tpi})
            types = [t for t, _ in auth_types_for_event(rv, event)]
            self.assertNotIn("m.room.third_party_invite", types)

    @for_room_versions(ALL_VERSIONS)
    def test_third_party_invite_ignored_unless_invite(self, rv: RoomVersion) -> None:
        """A third_party_invite on a join selects nothing extra."""
        room = RoomBuilder(rv)
        event = room.member_event(
            BOB, BOB, "join", {"third_party_invite": {"signed": {"mxid": BOB, "token": "tok"}}}
        )
        self.assertNotIn(("m.room.third_party_invite", "tok"), auth_types_for_event(rv, event))

    @for_room_versions(ALL_VERSIONS)
    def test_join_authorised_via_users_server(self, rv: RoomVersion) -> None:
        """Restricted-capable versions select the authorising user's membership on joins only."""
        room = RoomBuilder(rv)
        join = room.member_event(BOB, BOB, "join", {"join_authorised_via_users_server": CAROL})
        leave = room.member_event(BOB, BOB, "leave", {"join_authorised_via_users_server": CAROL})
        selected = auth_types_for_event(rv, join)
        if rv.restricted_join_rule:
            self.assertEqual(selected[-1], ("m.room.member", CAROL))
        else:
            self.assertNotIn(("m.room.member", CAROL), selected)
        self.assertNotIn(("m.room.member", CAROL), auth_types_for_event(rv, leave))

    def test_authoriser_equal_to_sender_not_duplicated(self) -> None:
        """An authoriser that is the joining user is listed once."""
        room = RoomBuilder(RoomVersions.V10)
        join = room.member_event(BOB, BOB, "join", {"join_authorised_via_users_server": BOB})
        selected = auth_types_for_event(RoomVersions.V10, join)
        self.assertEqual(selected.count(("m.room.member", BOB)), 1)
