"""State-independent rules: create events, the v12 room id, and the auth_events list."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from matrixd.api.errors import AuthError
from matrixd.events.event import Event, InternalMetadata
from matrixd.events.room_versions import RoomVersion, RoomVersions
from matrixd.state.auth import check_state_independent_auth_rules
from tests.state.auth_factory import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    AuthAssertions,
    RoomBuilder,
    expand,
    for_room_versions,
    joined_room,
    versions_where,
)

LEGACY = versions_where(lambda v: not v.room_id_is_create_event_hash)
HASHED_ROOM_ID = versions_where(lambda v: v.room_id_is_create_event_hash)
EXPLICIT_CREATOR = versions_where(lambda v: not v.implicit_room_creator)
IMPLICIT_CREATOR = versions_where(lambda v: v.implicit_room_creator)
RESTRICTED = versions_where(lambda v: v.restricted_join_rule)
NOT_RESTRICTED = versions_where(lambda v: not v.restricted_join_rule)


def _independent(room: RoomBuilder, event: Event, auth: Any = None, create: Any = "room") -> None:
    check_state_independent_auth_rules(
        room.room_version,
        event,
        room.auth_events_of(event) if auth is None else auth,
        room.create_event if create == "room" else create,
    )


@expand
class CreateRuleTests(unittest.TestCase):
    def _create(self, rv: RoomVersion, **kwargs: Any) -> tuple[RoomBuilder, Event]:
        room = RoomBuilder(rv)
        content = dict(room.create_event.content)
        content.update(kwargs.pop("content", {}))
        for key in kwargs.pop("drop_content", ()):
            content.pop(key)
        kwargs.setdefault("prev", [])
        event = room.make("m.room.create", kwargs.pop("sender", ALICE), content, state_key="", auth=[], **kwargs)
        return room, event

    @for_room_versions(ALL_VERSIONS)
    def test_plain_create_allowed(self, rv: RoomVersion) -> None:
        """A well-formed create event passes."""
        room, event = self._create(rv)
        self.assertIsNone(_independent(room, event))
        self.assertIsNone(_independent(room, room.create_event))

    @for_room_versions(ALL_VERSIONS)
    def test_prev_events_rejected(self, rv: RoomVersion) -> None:
        """A create event with prev_events is rejected."""
        room, event = self._create(rv, prev=["$other"])
        e = self.assertRaises(AuthError, _independent, room, event)
        self.assertIn("prev_events", e.msg)

    @for_room_versions(LEGACY)
    def test_room_id_domain_must_match_sender(self, rv: RoomVersion) -> None:
        """v1-v11: the room id's domain must be the sender's."""
        room, event = self._create(rv, extra={"room_id": "!room:elsewhere.example"})
        e = self.assertRaises(AuthError, _independent, room, event)
        self.assertIn("not on the sender's server", e.msg)

    @for_room_versions(LEGACY)
    def test_room_id_without_domain_rejected(self, rv: RoomVersion) -> None:
        """v1-v11: a create event whose room id has no domain is rejected."""
        room, event = self._create(rv, extra={"room_id": "!nodomain"})
        self.assertRaises(AuthError, _independent, room, event)

    @for_room_versions(HASHED_ROOM_ID)
    def test_v12_room_id_present_rejected(self, rv: RoomVersion) -> None:
        """v12: a create event carrying a room_id is rejected."""
        room, event = self._create(rv, extra={"room_id": "!room:a.example"})
        e = self.assertRaises(AuthError, _independent, room, event)
        self.assertIn("room_id", e.msg)

    @for_room_versions(ALL_VERSIONS)
    def test_unknown_room_version_rejected(self, rv: RoomVersion) -> None:
        """content.room_version naming an unknown version (or not a string) is rejected."""
        for bad in ("99", 1, None, "v1"):
            room, event = self._create(rv, content={"room_version": bad})
            e = self.assertRaises(AuthError, _independent, room, event)
            self.assertIn("unknown room version", e.msg)

    @for_room_versions(ALL_VERSIONS)
    def test_room_version_may_be_absent(self, rv: RoomVersion) -> None:
        """content.room_version is optional."""
        room, event = self._create(rv, drop_content=["room_version"])
        self.assertIsNone(_independent(room, event))

    @for_room_versions(EXPLICIT_CREATOR)
    def test_creator_required_before_v11(self, rv: RoomVersion) -> None:
        """v1-v10: a create event without content.creator is rejected."""
        room, event = self._create(rv, drop_content=["creator"])
        e = self.assertRaises(AuthError, _independent, room, event)
        self.assertIn("creator", e.msg)

    @for_room_versions(IMPLICIT_CREATOR)
    def test_creator_not_required_from_v11(self, rv: RoomVersion) -> None:
        """v11+: content.creator is not needed."""
        room, event = self._create(rv)
        self.assertNotIn("creator", event.content)
        self.assertIsNone(_independent(room, event))

    @for_room_versions(HASHED_ROOM_ID)
    def test_additional_creators_valid(self, rv: RoomVersion) -> None:
        """v12: additional_creators as a list of user ids (even historical ones) is accepted."""
        for value in ([], [BOB], [BOB, CAROL], ["@Old:x.example"], ["@:x.example:8448"]):
            room, event = self._create(rv, content={"additional_creators": value})
            self.assertIsNone(_independent(room, event))

    @for_room_versions(HASHED_ROOM_ID)
    def test_additional_creators_invalid(self, rv: RoomVersion) -> None:
        """v12: additional_creators that is not a list of valid user ids is rejected."""
        for value in (BOB, {"a": BOB}, [BOB, 5], ["bob"], ["@bob"], ["@bob:"], ["@bob:bad host"], [None]):
            room, event = self._create(rv, content={"additional_creators": value})
            e = self.assertRaises(AuthError, _independent, room, event)
            self.assertIn("additional_creators", e.msg)

    @for_room_versions(versions_where(lambda v: not v.privileged_creators))
    def test_additional_creators_ignored_before_v12(self, rv: RoomVersion) -> None:
        """v1-v11: additional_creators is not validated."""
        room, event = self._create(rv, content={"additional_creators": "garbage"})
        self.assertIsNone(_independent(room, event))


@expand
class AuthEventsListTests(unittest.TestCase, AuthAssertions):
    @for_room_versions(ALL_VERSIONS)
    def test_well_formed_auth_events_pass(self, rv: RoomVersion) -> None:
        """A message citing exactly the selected events passes."""
        room = joined_room(rv)
        self.assertIsNone(_independent(room, room.make("m.room.message", ALICE, {})))

    @for_room_versions(ALL_VERSIONS)
    def test_missing_auth_event_rejected(self, rv: RoomVersion) -> None:
        """An auth event id the caller cannot supply rejects the event."""
        room = joined_room(rv)
        event = room.make("m.room.message", ALICE, {}, auth=room_auth(room, ALICE) + ["$unknown"])
        e = self.assertRaises(AuthError, _independent, room, event)
        self.assertIn("not known", e.msg)

    @for_room_versions(ALL_VERSIONS)
    def test_duplicate_type_and_state_key_rejected(self, rv: RoomVersion) -> None:
        """Two auth events with the same (type, state_key) reject the event."""
        room = joined_room(rv)
        old_member = room.state[("m.room.member", ALICE)]
        room.member(ALICE, ALICE, "join", content={"displayname": "Alice"})
        event = room.make("m.room.message", ALICE, {}, auth=room_auth(room, ALICE) + [old_member.event_id])
        e = self.assertRaises(AuthError, _independent, room, event)
        self.assertIn("more than once", e.msg)

    @for_room_versions(ALL_VERSIONS)
    def test_same_event_twice_rejected(self, rv: RoomVersion) -> None:
        """Listing one auth event twice is a duplicate too."""
        room = joined_room(rv)
        pl = room.state[("m.room.power_levels", "")].event_id
        event = room.make("m.room.message", ALICE, {}, auth=room_auth(room, ALICE) + [pl])
        self.assertRaises(AuthError, _independent, room, event)

    @for_room_versions(ALL_VERSIONS)
    def test_unselected_entries_rejected(self, rv: RoomVersion) -> None:
        """Citing join rules on a message, another user's membership, or the server ACL is rejected."""
        room = joined_room(rv, members=[BOB])
        acl = room.send("m.room.server_acl", ALICE, {"allow": ["*"]}, state_key="")
        for extra in (
            room.state[("m.room.join_rules", "")].event_id,
            room.state[("m.room.member", BOB)].event_id,
            acl.event_id,
        ):
            event = room.make("m.room.message", ALICE, {}, auth=room_auth(room, ALICE) + [extra])
            e = self.assertRaises(AuthError, _independent, room, event)
            self.assertIn("selection", e.msg)

    @for_room_versions(ALL_VERSIONS)
    def test_non_state_auth_event_rejected(self, rv: RoomVersion) -> None:
        """A message event cited as an auth event rejects the event."""
        room = joined_room(rv)
        message = room.send("m.room.message", ALICE, {})
        event = room.make("m.room.message", ALICE, {}, auth=room_auth(room, ALICE) + [message.event_id])
        e = self.assertRaises(AuthError, _independent, room, event)
        self.assertIn("not a state event", e.msg)

    @for_room_versions(LEGACY)
    def test_create_required_before_v12(self, rv: RoomVersion) -> None:
        """v1-v11: auth_events without the create event are rejected."""
        room = joined_room(rv)
        auth = [i for i in room_auth(room, ALICE) if i != room.create_event.event_id]
        event = room.make("m.room.message", ALICE, {}, auth=auth)
        e = self.assertRaises(AuthError, _independent, room, event)
        self.assertIn("no m.room.create", e.msg)

    @for_room_versions(HASHED_ROOM_ID)
    def test_create_forbidden_from_v12(self, rv: RoomVersion) -> None:
        """v12: citing the create event is rejected."""
        room = joined_room(rv)
        event = room.make("m.room.message", ALICE, {}, auth=room_auth(room, ALICE) + [room.create_event.event_id])
        e = self.assertRaises(AuthError, _independent, room, event)
        self.assertIn("selection", e.msg)

    @for_room_versions(ALL_VERSIONS)
    def test_rejected_auth_event_rejected(self, rv: RoomVersion) -> None:
        """An auth event that was itself rejected rejects the event."""
        room = joined_room(rv)
        member = room.state[("m.room.member", ALICE)]
        metadata = InternalMetadata()
        metadata.rejected_reason = "auth"
        rejected = Event(member.get_pdu_json(), rv, event_id=member.event_id, internal_metadata=metadata)
        event = room.make("m.room.message", ALICE, {})
        auth = room.auth_events_of(event)
        auth[member.event_id] = rejected
        e = self.assertRaises(AuthError, _independent, room, event, auth)
        self.assertIn("was rejected", e.msg)

    @for_room_versions(ALL_VERSIONS)
    def test_auth_event_from_other_room_rejected(self, rv: RoomVersion) -> None:
        """An auth event whose room_id differs from the event's rejects the event."""
        room = joined_room(rv)
        member = room.state[("m.room.member", ALICE)]
        foreign = Event({**member.get_pdu_json(), "room_id": "!other:a.example"}, rv, event_id=member.event_id)
        event = room.make("m.room.message", ALICE, {})
        auth = room.auth_events_of(event)
        auth[member.event_id] = foreign
        e = self.assertRaises(AuthError, _independent, room, event, auth)
        self.assertIn("is in room", e.msg)

    @for_room_versions(HASHED_ROOM_ID)
    def test_v12_create_event_must_be_known(self, rv: RoomVersion) -> None:
        """v12: without the create event the room id cannot be checked, so the event is rejected."""
        room = joined_room(rv)
        event = room.make("m.room.message", ALICE, {})
        e = self.assertRaises(AuthError, _independent, room, event, None, None)
        self.assertIn("not known", e.msg)

    @for_room_versions(HASHED_ROOM_ID)
    def test_v12_room_id_must_name_create_event(self, rv: RoomVersion) -> None:
        """v12: a room id that is not '!' + the create event's id is rejected."""
        room = joined_room(rv)
        other = Event(room.create_event.get_pdu_json(), rv, event_id="$another")
        event = room.make("m.room.message", ALICE, {})
        e = self.assertRaises(AuthError, _independent, room, event, None, other)
        self.assertIn("does not name", e.msg)
        bad = room.make("m.room.message", ALICE, {}, extra={"room_id": "$" + room.room_id[1:]})
        self.assertRaises(AuthError, _independent, room, bad)

    @for_room_versions(HASHED_ROOM_ID)
    def test_v12_rejected_create_event(self, rv: RoomVersion) -> None:
        """v12: a room whose create event was rejected accepts no events."""
        room = joined_room(rv)
        metadata = InternalMetadata()
        metadata.rejected_reason = "auth"
        create = Event(room.create_event.get_pdu_json(), rv, room.create_event.event_id, metadata)
        e = self.assertRaises(AuthError, _independent, room, room.make("m.room.message", ALICE, {}), None, create)
        self.assertIn("rejected", e.msg)

    @for_room_versions(HASHED_ROOM_ID)
    def test_v12_room_id_names_non_create_event(self, rv: RoomVersion) -> None:
        """v12: a room id naming an event that is not a create event is rejected."""
        room = joined_room(rv)
        fake = Event({"type": "m.room.message", "sender": ALICE, "content": {}}, rv, room.create_event.event_id)
        e = self.assertRaises(AuthError, _independent, room, room.make("m.room.message", ALICE, {}), None, fake)
        self.assertIn("not a create event", e.msg)


@expand
class AuthorisingServerSignatureTests(unittest.TestCase, AuthAssertions):
    def _room(self, rv: RoomVersion) -> RoomBuilder:
        return joined_room(rv, members=[CAROL])

    @for_room_versions(RESTRICTED)
    def test_missing_signature_rejected(self, rv: RoomVersion) -> None:
        """v8+: a member event naming an authoriser must carry the authoriser's server signature."""
        room = self._room(rv)
        event = room.member_event(BOB, BOB, "join", {"join_authorised_via_users_server": CAROL})
        e = self.assertRaises(AuthError, _independent, room, event)
        self.assertIn("not signed by c.example", e.msg)

    @for_room_versions(RESTRICTED)
    def test_present_signature_allowed(self, rv: RoomVersion) -> None:
        """v8+: with the authoriser's server signature the event passes."""
        room = self._room(rv)
        sigs = {"b.example": {"ed25519:k": "c2ln"}, "c.example": {"ed25519:k": "c2ln"}}
        event = room.member_event(
            BOB, BOB, "join", {"join_authorised_via_users_server": CAROL}, extra={"signatures": sigs}
        )
        self.assertIsNone(_independent(room, event))

    @for_room_versions(RESTRICTED)
    def test_applies_to_every_membership(self, rv: RoomVersion) -> None:
        """v8+: the signature rule applies whatever the membership."""
        room = self._room(rv)
        room.join(BOB)
        event = room.member_event(BOB, BOB, "leave", {"join_authorised_via_users_server": CAROL})
        self.assertRaises(AuthError, _independent, room, event)

    @for_room_versions(RESTRICTED)
    def test_non_string_authoriser_rejected(self, rv: RoomVersion) -> None:
        """v8+: a join_authorised_via_users_server that is not a string is rejected."""
        room = self._room(rv)
        event = room.member_event(BOB, BOB, "join", {"join_authorised_via_users_server": 5})
        self.assertRaises(AuthError, _independent, room, event)

    @for_room_versions(NOT_RESTRICTED)
    def test_ignored_before_v8(self, rv: RoomVersion) -> None:
        """v1-v7: join_authorised_via_users_server has no meaning and needs no signature."""
        room = self._room(rv)
        event = room.member_event(BOB, BOB, "join", {"join_authorised_via_users_server": CAROL})
        self.assertAllowed(room, event)


def room_auth(room: RoomBuilder, sender: str) -> list[str]:
    """The auth event ids a message from ``sender`` would cite now."""
    return room.make("m.room.message", sender, {}).auth_event_ids()


class V12InternalTests(unittest.TestCase):
    def test_v12_room_id_is_derived_from_create(self) -> None:
        """The factory's v12 rooms use '!' + the create event id as room id (sanity of the fixtures)."""
        room = RoomBuilder(RoomVersions.V12)
        self.assertEqual(room.room_id, "!" + room.create_event.event_id[1:])
        self.assertNotIn("room_id", room.create_event.get_pdu_json())
