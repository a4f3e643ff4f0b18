"""The m.room.member rules: join, invite, leave (kick, unban), ban, knock."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from matrixd.events.room_versions import RoomVersion, RoomVersions
from tests.state.auth_factory import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    DAVE,
    EVE,
    AuthAssertions,
    RoomBuilder,
    expand,
    for_room_versions,
    joined_room,
    versions_where,
)

KNOCK = versions_where(lambda v: v.knock_join_rule)
NO_KNOCK = versions_where(lambda v: not v.knock_join_rule)
RESTRICTED = versions_where(lambda v: v.restricted_join_rule)
NO_RESTRICTED = versions_where(lambda v: not v.restricted_join_rule)
KNOCK_RESTRICTED = versions_where(lambda v: v.knock_restricted_join_rule)
NO_KNOCK_RESTRICTED = versions_where(lambda v: not v.knock_restricted_join_rule)
EXPLICIT_CREATOR = versions_where(lambda v: not v.implicit_room_creator)
IMPLICIT_CREATOR = versions_where(lambda v: v.implicit_room_creator)
PRIVILEGED = versions_where(lambda v: v.privileged_creators)
UNPRIVILEGED = versions_where(lambda v: not v.privileged_creators)


def _signed_by(*servers: str) -> dict[str, Any]:
    return {"signatures": {s: {"ed25519:k": "c2ln"} for s in servers}}


@expand
class MemberEventShapeTests(unittest.TestCase, AuthAssertions):
    @for_room_versions(ALL_VERSIONS)
    def test_missing_membership_rejected(self, rv: RoomVersion) -> None:
        """A member event without content.membership (or a non-string one) is rejected."""
        room = joined_room(rv)
        self.assertRejected(room, room.make("m.room.member", BOB, {}, state_key=BOB), "no content.membership")
        self.assertRejected(room, room.make("m.room.member", BOB, {"membership": 1}, state_key=BOB), "membership")

    @for_room_versions(ALL_VERSIONS)
    def test_missing_state_key_rejected(self, rv: RoomVersion) -> None:
        """A member event without a state_key is rejected."""
        room = joined_room(rv)
        self.assertRejected(room, room.make("m.room.member", ALICE, {"membership": "join"}), "no state_key")

    @for_room_versions(ALL_VERSIONS)
    def test_unknown_membership_rejected(self, rv: RoomVersion) -> None:
        """A membership value outside join/invite/leave/ban(/knock) is rejected."""
        room = joined_room(rv)
        self.assertRejected(room, room.member_event(ALICE, BOB, "dance"), "unknown membership")


@expand
class JoinTests(unittest.TestCase, AuthAssertions):
    @for_room_versions(ALL_VERSIONS)
    def test_creator_first_join(self, rv: RoomVersion) -> None:
        """The creator may join when the create event is the only prev event."""
        room = RoomBuilder(rv)
        self.assertAllowed(room, room.member_event(ALICE, ALICE, "join"))

    @for_room_versions(ALL_VERSIONS)
    def test_creator_join_needs_create_as_only_prev(self, rv: RoomVersion) -> None:
        """The creator's special case needs the create event to be the only prev event."""
        room = RoomBuilder(rv)
        other = room.send("m.room.message", ALICE, {})
        event = room.member_event(ALICE, ALICE, "join", prev=[room.create_event.event_id, other.event_id])
        self.assertRejected(room, event, "not invited")
        self.assertRejected(room, room.member_event(ALICE, ALICE, "join", prev=[other.event_id]), "not invited")

    @for_room_versions(ALL_VERSIONS)
    def test_non_creator_first_join_rejected(self, rv: RoomVersion) -> None:
        """Someone other than the creator cannot use the first-join case."""
        room = RoomBuilder(rv)
        self.assertRejected(room, room.member_event(BOB, BOB, "join"), "not invited")

    @for_room_versions(EXPLICIT_CREATOR)
    def test_first_join_uses_content_creator_before_v11(self, rv: RoomVersion) -> None:
        """v1-v10: the creator is content.creator, not the create event's sender."""
        room = RoomBuilder(rv, creator=ALICE, create_content={"creator": DAVE})
        self.assertAllowed(room, room.member_event(DAVE, DAVE, "join"))
        self.assertRejected(room, room.member_event(ALICE, ALICE, "join"), "not invited")

    @for_room_versions(IMPLICIT_CREATOR)
    def test_first_join_uses_sender_from_v11(self, rv: RoomVersion) -> None:
        """v11+: the creator is the create event's sender; content.creator means nothing."""
        room = RoomBuilder(rv, creator=ALICE, create_content={"creator": DAVE})
        self.assertAllowed(room, room.member_event(ALICE, ALICE, "join"))
        self.assertRejected(room, room.member_event(DAVE, DAVE, "join"), "not invited")

    @for_room_versions(PRIVILEGED)
    def test_additional_creator_has_no_first_join(self, rv: RoomVersion) -> None:
        """v12: only the create event's sender, not an additional creator, has the first-join case."""
        room = RoomBuilder(rv, create_content={"additional_creators": [BOB]})
        self.assertRejected(room, room.member_event(BOB, BOB, "join"), "not invited")

    @for_room_versions(ALL_VERSIONS)
    def test_join_for_someone_else_rejected(self, rv: RoomVersion) -> None:
        """A join whose sender is not the state_key is rejected."""
        room = joined_room(rv)
        self.assertRejected(room, room.member_event(ALICE, BOB, "join"), "on behalf of")

    @for_room_versions(ALL_VERSIONS)
    def test_public_join(self, rv: RoomVersion) -> None:
        """Anyone may join a public room."""
        room = joined_room(rv)
        self.assertAllowed(room, room.member_event(BOB, BOB, "join"))

    @for_room_versions(ALL_VERSIONS)
    def test_banned_cannot_join(self, rv: RoomVersion) -> None:
        """A banned user cannot join, even a public room."""
        room = joined_room(rv)
        room.member(ALICE, BOB, "ban")
        self.assertRejected(room, room.member_event(BOB, BOB, "join"), "banned")

    @for_room_versions(ALL_VERSIONS)
    def test_invite_only(self, rv: RoomVersion) -> None:
        """Invite rule: invited or joined users may join; others may not."""
        room = joined_room(rv, join_rule="invite")
        self.assertRejected(room, room.member_event(BOB, BOB, "join"), "not invited")
        room.member(ALICE, BOB, "invite")
        self.assertAllowed(room, room.member_event(BOB, BOB, "join"))
        room.join(BOB)
        self.assertAllowed(room, room.member_event(BOB, BOB, "join", {"displayname": "Bob"}))

    @for_room_versions(ALL_VERSIONS)
    def test_left_user_cannot_rejoin_invite_room(self, rv: RoomVersion) -> None:
        """Invite rule: a user who left needs a new invite."""
        room = joined_room(rv, join_rule="invite")
        room.member(ALICE, BOB, "invite")
        room.member(BOB, BOB, "leave")
        self.assertRejected(room, room.member_event(BOB, BOB, "join"), "not invited")

    @for_room_versions(ALL_VERSIONS)
    def test_no_join_rules_means_invite(self, rv: RoomVersion) -> None:
        """Without an m.room.join_rules event, the invite rule applies."""
        room = RoomBuilder(rv)
        room.join(ALICE)
        self.assertRejected(room, room.member_event(BOB, BOB, "join"), "not invited")
        room.member(ALICE, BOB, "invite")
        self.assertAllowed(room, room.member_event(BOB, BOB, "join"))

    @for_room_versions(ALL_VERSIONS)
    def test_private_and_unknown_rules_reject(self, rv: RoomVersion) -> None:
        """'private' and unknown join rules admit nobody, not even invitees."""
        for rule in ("private", "bogus", 5):
            room = joined_room(rv)
            room.join_rules(rule)  # type: ignore[arg-type]
            room.member(ALICE, BOB, "invite")
            self.assertRejected(room, room.member_event(BOB, BOB, "join"), "join rule")

    @for_room_versions(KNOCK)
    def test_knock_rule_behaves_like_invite(self, rv: RoomVersion) -> None:
        """v7+: under the knock rule, only invited or joined users may join."""
        room = joined_room(rv, join_rule="knock")
        self.assertRejected(room, room.member_event(BOB, BOB, "join"), "not invited")
        room.member(BOB, BOB, "knock")
        self.assertRejected(room, room.member_event(BOB, BOB, "join"), "not invited")
        room.member(ALICE, BOB, "invite")
        self.assertAllowed(room, room.member_event(BOB, BOB, "join"))

    @for_room_versions(NO_KNOCK)
    def test_knock_rule_unknown_before_v7(self, rv: RoomVersion) -> None:
        """v1-v6: 'knock' is not a join rule, so even an invitee cannot join."""
        room = joined_room(rv, join_rule="knock")
        room.member(ALICE, BOB, "invite")
        self.assertRejected(room, room.member_event(BOB, BOB, "join"), "join rule 'knock'")


@expand
class RestrictedJoinTests(unittest.TestCase, AuthAssertions):
    def _room(self, rv: RoomVersion, rule: str = "restricted", **power: Any) -> RoomBuilder:
        return joined_room(rv, join_rule=rule, members=[CAROL], **power)

    def _join(self, room: RoomBuilder, authoriser: Any = CAROL) -> Any:
        server = authoriser.split(":", 1)[1] if isinstance(authoriser, str) and ":" in authoriser else "x.example"
        content = {} if authoriser is None else {"join_authorised_via_users_server": authoriser}
        return room.member_event(BOB, BOB, "join", content, extra=_signed_by("b.example", server))

    @for_room_versions(RESTRICTED)
    def test_authorised_join(self, rv: RoomVersion) -> None:
        """v8+: a join authorised by a joined member able to invite is allowed."""
        self.assertAllowed(self._room(rv), self._join(self._room(rv)))

    @for_room_versions(RESTRICTED)
    def test_invited_or_joined_need_no_authoriser(self, rv: RoomVersion) -> None:
        """v8+: invited and joined users join a restricted room without an authoriser."""
        room = self._room(rv)
        room.member(ALICE, BOB, "invite")
        self.assertAllowed(room, self._join(room, None))
        room.join(BOB)
        self.assertAllowed(room, self._join(room, None))

    @for_room_versions(RESTRICTED)
    def test_no_authoriser_rejected(self, rv: RoomVersion) -> None:
        """v8+: an uninvited join without join_authorised_via_users_server is rejected."""
        room = self._room(rv)
        self.assertRejected(room, self._join(room, None), "join_authorised_via_users_server")

    @for_room_versions(RESTRICTED)
    def test_authoriser_not_joined(self, rv: RoomVersion) -> None:
        """v8+: an authoriser who is not joined (absent, invited or left) cannot authorise."""
        room = self._room(rv)
        self.assertRejected(room, self._join(room, EVE), "not joined")
        room.member(ALICE, EVE, "invite")
        self.assertRejected(room, self._join(room, EVE), "not joined")
        room.member(CAROL, CAROL, "leave")
        self.assertRejected(room, self._join(room, CAROL), "not joined")

    @for_room_versions(RESTRICTED)
    def test_authoriser_without_invite_power(self, rv: RoomVersion) -> None:
        """v8+: an authoriser below the invite level cannot authorise; at it, can."""
        room = self._room(rv, invite=10)
        self.assertRejected(room, self._join(room), "below the invite level")
        room = joined_room(rv, join_rule="restricted", members=[CAROL], users={CAROL: 10}, invite=10)
        self.assertAllowed(room, self._join(room))

    @for_room_versions(RESTRICTED)
    def test_banned_user_cannot_use_authoriser(self, rv: RoomVersion) -> None:
        """v8+: a banned user stays out even with an authoriser."""
        room = self._room(rv)
        room.member(ALICE, BOB, "ban")
        self.assertRejected(room, self._join(room), "banned")

    @for_room_versions(NO_RESTRICTED)
    def test_restricted_unknown_before_v8(self, rv: RoomVersion) -> None:
        """v1-v7: 'restricted' is not a join rule: neither authorised nor invited users may join."""
        room = self._room(rv)
        self.assertRejected(room, self._join(room), "join rule 'restricted'")
        room.member(ALICE, BOB, "invite")
        self.assertRejected(room, self._join(room, None), "join rule 'restricted'")

    @for_room_versions(KNOCK_RESTRICTED)
    def test_knock_restricted_join(self, rv: RoomVersion) -> None:
        """v10+: knock_restricted admits authorised and invited joins, and rejects others."""
        room = self._room(rv, "knock_restricted")
        self.assertAllowed(room, self._join(room))
        self.assertRejected(room, self._join(room, None), "join_authorised_via_users_server")
        self.assertRejected(room, self._join(room, EVE), "not joined")
        room.member(ALICE, BOB, "invite")
        self.assertAllowed(room, self._join(room, None))

    @for_room_versions(versions_where(lambda v: v.restricted_join_rule and not v.knock_restricted_join_rule))
    def test_knock_restricted_unknown_in_v8_v9(self, rv: RoomVersion) -> None:
        """v8-v9: 'knock_restricted' is not a join rule."""
        room = self._room(rv, "knock_restricted")
        self.assertRejected(room, self._join(room), "join rule 'knock_restricted'")
        room.member(ALICE, BOB, "invite")
        self.assertRejected(room, self._join(room, None), "join rule 'knock_restricted'")

    @for_room_versions(PRIVILEGED)
    def test_creator_authoriser_with_no_power_levels(self, rv: RoomVersion) -> None:
        """v12: a room creator authorises even when no power levels event exists."""
        room = RoomBuilder(rv)
        room.join(ALICE)
        room.join_rules("restricted")
        event = room.member_event(
            BOB, BOB, "join", {"join_authorised_via_users_server": ALICE}, extra=_signed_by("b.example", "a.example")
        )
        self.assertAllowed(room, event)


@expand
class InviteTests(unittest.TestCase, AuthAssertions):
    @for_room_versions(ALL_VERSIONS)
    def test_member_invites(self, rv: RoomVersion) -> None:
        """A joined member at the invite level may invite an outsider."""
        room = joined_room(rv, join_rule="invite", members=[CAROL])
        self.assertAllowed(room, room.member_event(CAROL, BOB, "invite"))

    @for_room_versions(ALL_VERSIONS)
    def test_reinvite_after_leave(self, rv: RoomVersion) -> None:
        """Someone who left, or is already invited, may be invited again."""
        room = joined_room(rv, members=[BOB])
        room.member(BOB, BOB, "leave")
        self.assertAllowed(room, room.member_event(ALICE, BOB, "invite"))
        room.member(ALICE, BOB, "invite")
        self.assertAllowed(room, room.member_event(ALICE, BOB, "invite"))

    @for_room_versions(ALL_VERSIONS)
    def test_inviter_must_be_joined(self, rv: RoomVersion) -> None:
        """An inviter who is not joined (absent, invited or left) is rejected."""
        room = joined_room(rv)
        self.assertRejected(room, room.member_event(CAROL, BOB, "invite"), "not joined")
        room.member(ALICE, CAROL, "invite")
        self.assertRejected(room, room.member_event(CAROL, BOB, "invite"), "not joined")
        room.join(CAROL)
        room.member(CAROL, CAROL, "leave")
        self.assertRejected(room, room.member_event(CAROL, BOB, "invite"), "not joined")

    @for_room_versions(ALL_VERSIONS)
    def test_cannot_invite_joined_or_banned(self, rv: RoomVersion) -> None:
        """Joined and banned users cannot be invited."""
        room = joined_room(rv, members=[BOB])
        self.assertRejected(room, room.member_event(ALICE, BOB, "invite"), "membership is join")
        room.member(ALICE, BOB, "ban")
        self.assertRejected(room, room.member_event(ALICE, BOB, "invite"), "membership is ban")

    @for_room_versions(ALL_VERSIONS)
    def test_invite_level(self, rv: RoomVersion) -> None:
        """Below the invite level, invites are rejected; at it, allowed."""
        room = joined_room(rv, members=[CAROL], invite=30)
        self.assertRejected(room, room.member_event(CAROL, BOB, "invite"), "below the invite level 30")
        room = joined_room(rv, members=[CAROL], users={CAROL: 30}, invite=30)
        self.assertAllowed(room, room.member_event(CAROL, BOB, "invite"))

    @for_room_versions(KNOCK)
    def test_invite_knocker(self, rv: RoomVersion) -> None:
        """v7+: a knocking user may be invited."""
        room = joined_room(rv, join_rule="knock")
        room.member(BOB, BOB, "knock")
        self.assertAllowed(room, room.member_event(ALICE, BOB, "invite"))

    @for_room_versions(ALL_VERSIONS)
    def test_no_power_levels_invite(self, rv: RoomVersion) -> None:
        """Without power levels the invite level is 0, so any joined member may invite."""
        room = RoomBuilder(rv)
        room.join(ALICE)
        room.join_rules("public")
        room.join(CAROL)
        self.assertAllowed(room, room.member_event(CAROL, BOB, "invite"))


@expand
class LeaveTests(unittest.TestCase, AuthAssertions):
    @for_room_versions(ALL_VERSIONS)
    def test_self_leave_when_joined_or_invited(self, rv: RoomVersion) -> None:
        """A joined user may leave and an invited user may reject the invite."""
        room = joined_room(rv, members=[BOB])
        self.assertAllowed(room, room.member_event(BOB, BOB, "leave"))
        room.member(ALICE, CAROL, "invite")
        self.assertAllowed(room, room.member_event(CAROL, CAROL, "leave"))

    @for_room_versions(ALL_VERSIONS)
    def test_self_leave_otherwise_rejected(self, rv: RoomVersion) -> None:
        """Leaving without being joined or invited (absent, left, banned) is rejected."""
        room = joined_room(rv)
        self.assertRejected(room, room.member_event(BOB, BOB, "leave"), "cannot leave")
        room.join(BOB)
        room.member(BOB, BOB, "leave")
        self.assertRejected(room, room.member_event(BOB, BOB, "leave"), "cannot leave")
        room.member(ALICE, BOB, "ban")
        self.assertRejected(room, room.member_event(BOB, BOB, "leave"), "cannot leave")

    @for_room_versions(KNOCK)
    def test_knocker_may_rescind(self, rv: RoomVersion) -> None:
        """v7+: a knocking user may withdraw the knock by leaving."""
        room = joined_room(rv, join_rule="knock")
        room.member(BOB, BOB, "knock")
        self.assertAllowed(room, room.member_event(BOB, BOB, "leave"))

    @for_room_versions(NO_KNOCK)
    def test_knock_state_cannot_leave_before_v7(self, rv: RoomVersion) -> None:
        """v1-v6: a (foreign) knock membership is not one a user may leave from."""
        room = joined_room(rv)
        room.member(BOB, BOB, "knock")
        self.assertRejected(room, room.member_event(BOB, BOB, "leave"), "cannot leave")

    @for_room_versions(ALL_VERSIONS)
    def test_kick(self, rv: RoomVersion) -> None:
        """A joined user at the kick level may kick a lower user."""
        room = joined_room(rv, members=[BOB])
        self.assertAllowed(room, room.member_event(ALICE, BOB, "leave"))

    @for_room_versions(ALL_VERSIONS)
    def test_kick_invited_or_absent_user(self, rv: RoomVersion) -> None:
        """Kicks also revoke invites and apply to users never in the room."""
        room = joined_room(rv)
        self.assertAllowed(room, room.member_event(ALICE, BOB, "leave"))
        room.member(ALICE, BOB, "invite")
        self.assertAllowed(room, room.member_event(ALICE, BOB, "leave"))

    @for_room_versions(ALL_VERSIONS)
    def test_kicker_must_be_joined(self, rv: RoomVersion) -> None:
        """A kicker who is not joined is rejected."""
        room = joined_room(rv, members=[BOB], users={CAROL: 100})
        self.assertRejected(room, room.member_event(CAROL, BOB, "leave"), "not joined")

    @for_room_versions(ALL_VERSIONS)
    def test_kick_needs_kick_level(self, rv: RoomVersion) -> None:
        """Below the kick level, kicks are rejected even of lower users."""
        room = joined_room(rv, members=[BOB, CAROL], users={CAROL: 40, BOB: 10}, kick=50)
        self.assertRejected(room, room.member_event(CAROL, BOB, "leave"), "kick level 50")

    @for_room_versions(ALL_VERSIONS)
    def test_kick_needs_higher_level_than_target(self, rv: RoomVersion) -> None:
        """A user at the same or higher level cannot be kicked."""
        room = joined_room(rv, members=[BOB, CAROL], users={CAROL: 50, BOB: 50})
        self.assertRejected(room, room.member_event(CAROL, BOB, "leave"), "above the target's 50")
        room = joined_room(rv, members=[BOB, CAROL], users={CAROL: 50, BOB: 60})
        self.assertRejected(room, room.member_event(CAROL, BOB, "leave"), "above the target's 60")
        room = joined_room(rv, members=[BOB, CAROL], users={CAROL: 50, BOB: 49})
        self.assertAllowed(room, room.member_event(CAROL, BOB, "leave"))

    @for_room_versions(ALL_VERSIONS)
    def test_unban_needs_ban_and_kick_level(self, rv: RoomVersion) -> None:
        """Unbanning needs both the ban and the kick level."""
        room = joined_room(rv, members=[CAROL], users={CAROL: 50}, ban=60, kick=50)
        room.member(ALICE, BOB, "ban")
        self.assertRejected(room, room.member_event(CAROL, BOB, "leave"), "unban needs the ban level 60")
        room = joined_room(rv, members=[CAROL], users={CAROL: 50}, ban=50, kick=60)
        room.member(ALICE, BOB, "ban")
        self.assertRejected(room, room.member_event(CAROL, BOB, "leave"), "kick level 60")
        room = joined_room(rv, members=[CAROL], users={CAROL: 50}, ban=50, kick=50)
        room.member(ALICE, BOB, "ban")
        self.assertAllowed(room, room.member_event(CAROL, BOB, "leave"))


@expand
class BanTests(unittest.TestCase, AuthAssertions):
    @for_room_versions(ALL_VERSIONS)
    def test_ban(self, rv: RoomVersion) -> None:
        """A joined user at the ban level bans lower users, in the room or not."""
        room = joined_room(rv, members=[BOB])
        self.assertAllowed(room, room.member_event(ALICE, BOB, "ban"))
        self.assertAllowed(room, room.member_event(ALICE, EVE, "ban"))

    @for_room_versions(ALL_VERSIONS)
    def test_banner_must_be_joined(self, rv: RoomVersion) -> None:
        """A banner who is not joined is rejected."""
        room = joined_room(rv, members=[BOB], users={CAROL: 100})
        self.assertRejected(room, room.member_event(CAROL, BOB, "ban"), "not joined")

    @for_room_versions(ALL_VERSIONS)
    def test_ban_level(self, rv: RoomVersion) -> None:
        """Below the ban level, bans are rejected."""
        room = joined_room(rv, members=[BOB, CAROL], users={CAROL: 40}, ban=50)
        self.assertRejected(room, room.member_event(CAROL, BOB, "ban"), "ban level 50")

    @for_room_versions(ALL_VERSIONS)
    def test_ban_needs_higher_level_than_target(self, rv: RoomVersion) -> None:
        """A user at the same level cannot be banned."""
        room = joined_room(rv, members=[BOB, CAROL], users={CAROL: 50, BOB: 50})
        self.assertRejected(room, room.member_event(CAROL, BOB, "ban"), "above the target's")

    @for_room_versions(ALL_VERSIONS)
    def test_cannot_ban_self_at_own_level(self, rv: RoomVersion) -> None:
        """Banning yourself fails: your level is not below your own."""
        room = joined_room(rv)
        self.assertRejected(room, room.member_event(ALICE, ALICE, "ban"), "above the target's")

    @for_room_versions(ALL_VERSIONS)
    def test_no_power_levels(self, rv: RoomVersion) -> None:
        """Without power levels the creator (100, or infinite from v12) may ban; others (0) may not."""
        room = RoomBuilder(rv)
        room.join(ALICE)
        room.join_rules("public")
        room.join(BOB)
        self.assertAllowed(room, room.member_event(ALICE, BOB, "ban"))
        self.assertRejected(room, room.member_event(BOB, ALICE, "ban"), "ban level 50")


@expand
class KnockTests(unittest.TestCase, AuthAssertions):
    @for_room_versions(KNOCK)
    def test_knock(self, rv: RoomVersion) -> None:
        """v7+: an outsider (or someone who left) may knock on a knock room."""
        room = joined_room(rv, join_rule="knock")
        self.assertAllowed(room, room.member_event(BOB, BOB, "knock"))
        room.member(BOB, BOB, "leave")
        self.assertAllowed(room, room.member_event(BOB, BOB, "knock"))

    @for_room_versions(KNOCK)
    def test_knock_needs_knock_rule(self, rv: RoomVersion) -> None:
        """v7+: knocking on a public, invite or restricted room is rejected."""
        for rule in ("public", "invite", "restricted"):
            room = joined_room(rv, join_rule=rule)
            self.assertRejected(room, room.member_event(BOB, BOB, "knock"), "cannot knock: join rule")

    @for_room_versions(KNOCK)
    def test_knock_on_behalf_rejected(self, rv: RoomVersion) -> None:
        """v7+: knocks must be sent by the knocking user."""
        room = joined_room(rv, join_rule="knock")
        self.assertRejected(room, room.member_event(ALICE, BOB, "knock"), "on behalf")

    @for_room_versions(KNOCK)
    def test_knock_with_membership_rejected(self, rv: RoomVersion) -> None:
        """v7+: banned, invited and joined users cannot knock."""
        for membership in ("ban", "invite", "join"):
            room = joined_room(rv, join_rule="knock")
            room.member(ALICE if membership != "join" else BOB, BOB, membership)
            self.assertRejected(room, room.member_event(BOB, BOB, "knock"), f"membership {membership}")

    @for_room_versions(KNOCK_RESTRICTED)
    def test_knock_restricted(self, rv: RoomVersion) -> None:
        """v10+: knock_restricted rooms accept knocks."""
        room = joined_room(rv, join_rule="knock_restricted")
        self.assertAllowed(room, room.member_event(BOB, BOB, "knock"))

    @for_room_versions(versions_where(lambda v: v.knock_join_rule and not v.knock_restricted_join_rule))
    def test_knock_restricted_not_knockable_v7_to_v9(self, rv: RoomVersion) -> None:
        """v7-v9: knock_restricted is not a knock rule."""
        room = joined_room(rv, join_rule="knock_restricted")
        self.assertRejected(room, room.member_event(BOB, BOB, "knock"), "cannot knock")

    @for_room_versions(NO_KNOCK)
    def test_knock_unknown_before_v7(self, rv: RoomVersion) -> None:
        """v1-v6: knock is an unknown membership."""
        room = joined_room(rv, join_rule="knock")
        self.assertRejected(room, room.member_event(BOB, BOB, "knock"), "unknown membership")


@expand
class CreatorPowerTests(unittest.TestCase, AuthAssertions):
    @for_room_versions(PRIVILEGED)
    def test_creators_cannot_be_kicked_or_banned(self, rv: RoomVersion) -> None:
        """v12: even a level-100 user cannot kick or ban a room creator."""
        room = joined_room(rv, members=[BOB], users={BOB: 100})
        self.assertRejected(room, room.member_event(BOB, ALICE, "leave"), "above the target's inf")
        self.assertRejected(room, room.member_event(BOB, ALICE, "ban"), "above the target's inf")

    @for_room_versions(PRIVILEGED)
    def test_creators_cannot_kick_each_other(self, rv: RoomVersion) -> None:
        """v12: infinite is not above infinite, so creators cannot kick each other."""
        room = RoomBuilder(rv, create_content={"additional_creators": [BOB]})
        room.join(ALICE)
        room.join_rules("public")
        room.join(BOB)
        self.assertRejected(room, room.member_event(BOB, ALICE, "leave"), "above the target's inf")
        self.assertRejected(room, room.member_event(ALICE, BOB, "ban"), "above the target's inf")

    @for_room_versions(PRIVILEGED)
    def test_creator_kicks_anyone_else(self, rv: RoomVersion) -> None:
        """v12: a creator outranks any power level, however large."""
        room = joined_room(rv, members=[BOB], users={BOB: 2**53 - 1})
        self.assertAllowed(room, room.member_event(ALICE, BOB, "ban"))

    @for_room_versions(UNPRIVILEGED)
    def test_creator_is_ordinary_with_power_levels(self, rv: RoomVersion) -> None:
        """v1-v11: with power levels, the creator's level is whatever they say."""
        room = joined_room(rv, members=[BOB], users={BOB: 100})
        self.assertRejected(room, room.member_event(BOB, ALICE, "ban"), "above the target's 100")
        room = joined_room(rv, members=[BOB], users={BOB: 101})
        self.assertAllowed(room, room.member_event(BOB, ALICE, "ban"))

    def test_v11_sender_creator_without_power_levels(self) -> None:
        """v11: with no power levels the create event's sender has 100 and may kick."""
        room = RoomBuilder(RoomVersions.V11, create_content={"creator": BOB})
        room.join(ALICE)
        room.join_rules("public")
        room.join(BOB)
        self.assertAllowed(room, room.member_event(ALICE, BOB, "leave"))
        self.assertRejected(room, room.member_event(BOB, ALICE, "leave"), "kick level")
