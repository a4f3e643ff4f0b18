"""The remaining state-dependent rules: m.federate, aliases, membership, levels, @-keys, redactions."""

from __future__ import annotations

from twisted.trial import unittest

from matrixd.api.errors import AuthError
from matrixd.events.event import Event
from matrixd.events.room_versions import RoomVersion, RoomVersions
from matrixd.state.auth import check_auth, check_state_dependent_auth_rules
from tests.state.auth_factory import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    DAVE,
    AuthAssertions,
    RoomBuilder,
    expand,
    for_room_versions,
    joined_room,
    versions_where,
)

ALIASES_SPECIAL = versions_where(lambda v: v.special_case_aliases_auth)
ALIASES_ORDINARY = versions_where(lambda v: not v.special_case_aliases_auth)
V1_REDACTIONS = versions_where(lambda v: v.event_format == 1)
LATER_REDACTIONS = versions_where(lambda v: v.event_format != 1)
PRIVILEGED = versions_where(lambda v: v.privileged_creators)


@expand
class FederateTests(unittest.TestCase, AuthAssertions):
    def _room(self, rv: RoomVersion, federate: object) -> RoomBuilder:
        room = RoomBuilder(rv, create_content={"m.federate": federate})
        room.join(ALICE)
        room.join_rules("public")
        return room

    @for_room_versions(ALL_VERSIONS)
    def test_unfederated_room_refuses_other_servers(self, rv: RoomVersion) -> None:
        """m.federate false: users of other servers cannot join or send."""
        room = self._room(rv, False)
        self.assertRejected(room, room.member_event(BOB, BOB, "join"), "m.federate")
        room.join(BOB)
        self.assertRejected(room, room.make("m.room.message", BOB, {}), "m.federate")

    @for_room_versions(ALL_VERSIONS)
    def test_unfederated_room_admits_same_server(self, rv: RoomVersion) -> None:
        """m.federate false: users on the creator's server are unaffected."""
        room = self._room(rv, False)
        self.assertAllowed(room, room.member_event(DAVE, DAVE, "join"))

    @for_room_versions(ALL_VERSIONS)
    def test_federate_true_or_other_values(self, rv: RoomVersion) -> None:
        """Only a literal false restricts federation."""
        for value in (True, "false", 0, None):
            room = self._room(rv, value)
            self.assertAllowed(room, room.member_event(BOB, BOB, "join"))


@expand
class AliasesTests(unittest.TestCase, AuthAssertions):
    @for_room_versions(ALIASES_SPECIAL)
    def test_aliases_for_own_server(self, rv: RoomVersion) -> None:
        """v1-v5: any user may set aliases under their server's state_key, even outside the room."""
        room = joined_room(rv, state_default=100)
        event = room.make("m.room.aliases", BOB, {"aliases": ["#x:b.example"]}, state_key="b.example")
        self.assertAllowed(room, event)

    @for_room_versions(ALIASES_SPECIAL)
    def test_aliases_for_other_server_rejected(self, rv: RoomVersion) -> None:
        """v1-v5: the state_key must be the sender's server."""
        room = joined_room(rv)
        event = room.make("m.room.aliases", ALICE, {"aliases": []}, state_key="b.example")
        self.assertRejected(room, event, "not the sender's server")

    @for_room_versions(ALIASES_SPECIAL)
    def test_aliases_without_state_key_rejected(self, rv: RoomVersion) -> None:
        """v1-v5: an m.room.aliases without state_key is rejected."""
        room = joined_room(rv)
        self.assertRejected(room, room.make("m.room.aliases", ALICE, {"aliases": []}), "no state_key")

    @for_room_versions(ALIASES_ORDINARY)
    def test_aliases_ordinary_state_from_v6(self, rv: RoomVersion) -> None:
        """v6+: m.room.aliases is an ordinary state event: joined, at the state level."""
        room = joined_room(rv, members=[CAROL])
        bob = room.make("m.room.aliases", BOB, {"aliases": []}, state_key="b.example")
        self.assertRejected(room, bob, "not joined")
        carol = room.make("m.room.aliases", CAROL, {"aliases": []}, state_key="c.example")
        self.assertRejected(room, carol, "needs power level 50")
        other = room.make("m.room.aliases", ALICE, {"aliases": []}, state_key="elsewhere.example")
        self.assertAllowed(room, other)


@expand
class SenderMembershipTests(unittest.TestCase, AuthAssertions):
    @for_room_versions(ALL_VERSIONS)
    def test_joined_sender_allowed(self, rv: RoomVersion) -> None:
        """A joined member may send a message."""
        room = joined_room(rv, members=[BOB])
        self.assertAllowed(room, room.make("m.room.message", BOB, {"body": "hi"}))

    @for_room_versions(ALL_VERSIONS)
    def test_non_joined_sender_rejected(self, rv: RoomVersion) -> None:
        """Absent, invited, left, banned and knocking senders cannot send."""
        room = joined_room(rv)
        self.assertRejected(room, room.make("m.room.message", BOB, {}), "not joined")
        for membership in ("invite", "leave", "ban", "knock"):
            room.member(ALICE, BOB, membership)
            self.assertRejected(room, room.make("m.room.message", BOB, {}), "not joined")


@expand
class RequiredPowerLevelTests(unittest.TestCase, AuthAssertions):
    @for_room_versions(ALL_VERSIONS)
    def test_events_default(self, rv: RoomVersion) -> None:
        """Messages need events_default unless events[] names the type."""
        room = joined_room(rv, members=[BOB, CAROL], users={CAROL: 10}, events_default=10)
        self.assertRejected(room, room.make("m.room.message", BOB, {}), "needs power level 10")
        self.assertAllowed(room, room.make("m.room.message", CAROL, {}))

    @for_room_versions(ALL_VERSIONS)
    def test_events_override(self, rv: RoomVersion) -> None:
        """events[type] overrides the defaults, up or down."""
        room = joined_room(rv, members=[BOB], events={"m.room.message": 20, "m.room.topic": 0})
        self.assertRejected(room, room.make("m.room.message", BOB, {}), "needs power level 20")
        self.assertAllowed(room, room.make("m.room.topic", BOB, {"topic": "t"}, state_key=""))
        self.assertAllowed(room, room.make("m.reaction", BOB, {}))

    @for_room_versions(ALL_VERSIONS)
    def test_state_default(self, rv: RoomVersion) -> None:
        """State events need state_default; a state_key makes any type a state event."""
        room = joined_room(rv, members=[BOB])
        self.assertRejected(room, room.make("m.room.topic", BOB, {}, state_key=""), "needs power level 50")
        self.assertRejected(room, room.make("m.room.message", BOB, {}, state_key=""), "needs power level 50")
        self.assertAllowed(room, room.make("m.room.topic", ALICE, {}, state_key=""))

    @for_room_versions(ALL_VERSIONS)
    def test_no_power_levels_defaults(self, rv: RoomVersion) -> None:
        """Without power levels: messages need 0, state needs 50, the creator has 100 (v12: infinite)."""
        room = RoomBuilder(rv)
        room.join(ALICE)
        room.join_rules("public")
        room.join(BOB)
        self.assertAllowed(room, room.make("m.room.message", BOB, {}))
        self.assertRejected(room, room.make("m.room.topic", BOB, {}, state_key=""), "needs power level 50")
        self.assertAllowed(room, room.make("m.room.topic", ALICE, {}, state_key=""))

    @for_room_versions(versions_where(lambda v: not v.enforce_int_power_levels))
    def test_string_levels_apply(self, rv: RoomVersion) -> None:
        """v1-v9: string levels in state are read as integers."""
        room = joined_room(rv, members=[BOB], users={BOB: "30"}, events={"m.room.message": "31"})
        self.assertRejected(room, room.make("m.room.message", BOB, {}), "needs power level 31")
        room = joined_room(rv, members=[BOB], users={BOB: "31"}, events={"m.room.message": " 31"})
        self.assertAllowed(room, room.make("m.room.message", BOB, {}))


@expand
class StateKeyUserTests(unittest.TestCase, AuthAssertions):
    @for_room_versions(ALL_VERSIONS)
    def test_at_state_key_must_be_sender(self, rv: RoomVersion) -> None:
        """A state_key starting with @ must be the sender's own user id."""
        room = joined_room(rv)
        self.assertRejected(room, room.make("org.example.s", ALICE, {}, state_key=BOB), "starts with @")
        self.assertRejected(room, room.make("org.example.s", ALICE, {}, state_key="@"), "starts with @")
        self.assertAllowed(room, room.make("org.example.s", ALICE, {}, state_key=ALICE))
        self.assertAllowed(room, room.make("org.example.s", ALICE, {}, state_key="x@y"))


@expand
class RedactionTests(unittest.TestCase, AuthAssertions):
    def _room(self, rv: RoomVersion) -> RoomBuilder:
        return joined_room(rv, members=[BOB, CAROL], users={CAROL: 50})

    def _redaction(self, room: RoomBuilder, sender: str, redacts: str, event_id: str | None = None) -> Event:
        if room.room_version.redacts_in_content:
            return room.make("m.room.redaction", sender, {"redacts": redacts}, event_id=event_id)
        return room.make("m.room.redaction", sender, {}, extra={"redacts": redacts}, event_id=event_id)

    @for_room_versions(V1_REDACTIONS)
    def test_redact_level_allows_any(self, rv: RoomVersion) -> None:
        """v1-v2: at the redact level any event may be redacted."""
        room = self._room(rv)
        target = room.send("m.room.message", BOB, {})
        self.assertAllowed(room, self._redaction(room, CAROL, target.event_id))

    @for_room_versions(V1_REDACTIONS)
    def test_same_domain_event_ids(self, rv: RoomVersion) -> None:
        """v1-v2: below the redact level, only events whose id shares the redaction's id domain."""
        room = self._room(rv)
        own = room.send("m.room.message", BOB, {})
        other = room.send("m.room.message", ALICE, {})
        self.assertAllowed(room, self._redaction(room, BOB, own.event_id))
        self.assertRejected(room, self._redaction(room, BOB, other.event_id), "redact level 50")
        forged = self._redaction(room, BOB, other.event_id, event_id="$999:a.example")
        self.assertAllowed(room, forged)

    @for_room_versions(V1_REDACTIONS)
    def test_missing_or_domainless_redacts(self, rv: RoomVersion) -> None:
        """v1-v2: no redacts, or a redacts without a domain, needs the redact level."""
        room = self._room(rv)
        self.assertRejected(room, room.make("m.room.redaction", BOB, {}), "redact level")
        self.assertRejected(room, self._redaction(room, BOB, "$nodomain"), "redact level")
        self.assertAllowed(room, room.make("m.room.redaction", CAROL, {}))

    @for_room_versions(V1_REDACTIONS)
    def test_events_level_still_applies(self, rv: RoomVersion) -> None:
        """v1-v2: the required level for m.room.redaction is checked before the redact rule."""
        room = joined_room(rv, members=[BOB, CAROL], users={CAROL: 50}, events={"m.room.redaction": 60})
        target = room.send("m.room.message", BOB, {})
        self.assertRejected(room, self._redaction(room, CAROL, target.event_id), "needs power level 60")

    @for_room_versions(LATER_REDACTIONS)
    def test_redactions_are_ordinary_from_v3(self, rv: RoomVersion) -> None:
        """v3+: the auth rules ignore the redact level: anyone joined may send a redaction."""
        room = self._room(rv)
        other = room.send("m.room.message", ALICE, {})
        self.assertAllowed(room, self._redaction(room, BOB, other.event_id))

    @for_room_versions(LATER_REDACTIONS)
    def test_redaction_events_level_from_v3(self, rv: RoomVersion) -> None:
        """v3+: events['m.room.redaction'] governs who may send redactions."""
        room = joined_room(rv, members=[BOB], events={"m.room.redaction": 10})
        other = room.send("m.room.message", ALICE, {})
        self.assertRejected(room, self._redaction(room, BOB, other.event_id), "needs power level 10")


@expand
class DependentEntryTests(unittest.TestCase):
    @for_room_versions(ALL_VERSIONS)
    def test_no_create_event_rejected(self, rv: RoomVersion) -> None:
        """Without a create event in the state (or given), nothing is allowed."""
        room = joined_room(rv)
        state = {k: v for k, v in room.state.items() if k[0] != "m.room.create"}
        event = room.make("m.room.message", ALICE, {})
        e = self.assertRaises(AuthError, check_state_dependent_auth_rules, rv, event, state)
        self.assertIn("no m.room.create", e.msg)

    @for_room_versions(ALL_VERSIONS)
    def test_create_event_passes(self, rv: RoomVersion) -> None:
        """A create event has no state-dependent rules."""
        room = RoomBuilder(rv)
        self.assertIsNone(check_state_dependent_auth_rules(rv, room.create_event, {}))

    @for_room_versions(PRIVILEGED)
    def test_v12_create_event_from_parameter(self, rv: RoomVersion) -> None:
        """v12: the create event may come from the parameter when the state lacks it."""
        room = joined_room(rv, members=[BOB])
        state = {k: v for k, v in room.state.items() if k[0] != "m.room.create"}
        message = room.make("m.room.message", BOB, {})
        self.assertIsNone(check_state_dependent_auth_rules(rv, message, state, create_event=room.create_event))
        topic = room.make("m.room.topic", ALICE, {}, state_key="")
        self.assertIsNone(check_state_dependent_auth_rules(rv, topic, state, create_event=room.create_event))
        e = self.assertRaises(AuthError, check_state_dependent_auth_rules, rv, topic, {**state})
        self.assertIn("no m.room.create", e.msg)


@expand
class CheckAuthTests(unittest.TestCase):
    @for_room_versions(ALL_VERSIONS)
    def test_local_event_allowed(self, rv: RoomVersion) -> None:
        """check_auth takes the auth events from the state and runs both rule sets."""
        room = joined_room(rv, members=[BOB])
        self.assertIsNone(check_auth(rv, room.make("m.room.message", BOB, {}), room.state))
        self.assertIsNone(check_auth(rv, room.member_event(ALICE, CAROL, "invite"), room.state))

    @for_room_versions(ALL_VERSIONS)
    def test_state_dependent_failure(self, rv: RoomVersion) -> None:
        """check_auth reports state-dependent failures."""
        room = joined_room(rv, members=[BOB])
        e = self.assertRaises(AuthError, check_auth, rv, room.make("m.room.topic", BOB, {}, state_key=""), room.state)
        self.assertIn("needs power level 50", e.msg)

    @for_room_versions(ALL_VERSIONS)
    def test_auth_event_outside_state(self, rv: RoomVersion) -> None:
        """check_auth rejects auth events the state does not hold."""
        room = joined_room(rv, members=[BOB])
        stale = room.state[("m.room.member", BOB)]
        room.member(BOB, BOB, "join", content={"displayname": "B"})
        event = room.make("m.room.message", BOB, {})
        auth = [i for i in event.auth_event_ids() if i != room.state[("m.room.member", BOB)].event_id]
        event = room.make("m.room.message", BOB, {}, auth=auth + [stale.event_id])
        e = self.assertRaises(AuthError, check_auth, rv, event, room.state)
        self.assertIn("not known", e.msg)

    @for_room_versions(ALL_VERSIONS)
    def test_create_event(self, rv: RoomVersion) -> None:
        """check_auth on a create event runs the create rules only."""
        room = RoomBuilder(rv)
        self.assertIsNone(check_auth(rv, room.create_event, {}))

    def test_v12_without_create_anywhere(self) -> None:
        """v12: check_auth with neither a create event in state nor given rejects."""
        rv = RoomVersions.V12
        room = joined_room(rv)
        state = {k: v for k, v in room.state.items() if k[0] != "m.room.create"}
        e = self.assertRaises(AuthError, check_auth, rv, room.make("m.room.message", ALICE, {}), state)
        self.assertIn("not known", e.msg)
