"""Serving other servers' membership handshakes: make/send join (v1, v2), leave, knock."""

from __future__ import annotations

import urllib.parse
from typing import Any

from twisted.trial import unittest

from matrixd.events.event import Event, JsonDict
from matrixd.events.hashing import add_content_hash
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from matrixd.events.signing import sign_event_dict
from matrixd.state.auth import check_state_independent_auth_rules
from tests.federation.utils import REMOTE, create_room, join, make_federating_homeserver

BOB = f"@bob:{REMOTE}"


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class ServeMembershipTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(self)
        self.alice, self.alice_token = self.hs.create_user("alice")
        self.st = self.hs.components.core.stores

    def room(self, preset: str = "public_chat", version: str = "10", **extra: Any) -> str:
        return create_room(self.hs, self.alice, {"preset": preset, "room_version": version, **extra})

    def make(self, kind: str, room_id: str, user_id: str = BOB, versions: str = "ver=10&ver=12") -> Any:
        return self.remote.request(
            self.hs, "GET", f"/_matrix/federation/v1/make_{kind}/{q(room_id)}/{q(user_id)}?{versions}"
        )

    def sign(self, rv: RoomVersion, template: JsonDict) -> Event:
        pdu = {k: v for k, v in template.items()}
        pdu["origin_server_ts"] = 2_000_000
        signed = sign_event_dict(rv, add_content_hash(pdu), REMOTE, self.remote.signing_key)
        return Event(signed, rv)

    def handshake(self, kind: str, room_id: str, send_version: str = "v2") -> tuple[Event, Any]:
        channel = self.make(kind, room_id)
        self.assertEqual(channel.code, 200, channel.result_body)
        rv = KNOWN_ROOM_VERSIONS[channel.json_body["room_version"]]
        event = self.sign(rv, channel.json_body["event"])
        path = f"/_matrix/federation/{send_version}/send_{kind}/{q(room_id)}/{q(event.event_id)}"
        return event, self.remote.request(self.hs, "PUT", path, event.get_pdu_json())

    def test_make_join_template(self) -> None:
        """make_join gives an unsigned join template on the room's extremities, with the room version."""
        room_id = self.room()
        channel = self.make("join", room_id)
        self.assertEqual(channel.code, 200, channel.result_body)
        body = channel.json_body
        self.assertEqual(body["room_version"], "10")
        template = body["event"]
        self.assertEqual((template["type"], template["state_key"], template["content"]["membership"]),
                         ("m.room.member", BOB, "join"))
        self.assertNotIn("signatures", template)
        self.assertNotIn("hashes", template)
        latest = self.hs.run(self.st.events.get_latest_event_ids_in_room(room_id))
        self.assertEqual(template["prev_events"], latest)

    def test_make_join_incompatible_version(self) -> None:
        """A server not supporting the room's version gets 400 M_INCOMPATIBLE_ROOM_VERSION."""
        channel = self.make("join", self.room(), versions="ver=1&ver=2")
        self.assertEqual(channel.code, 400, channel.result_body)
        self.assertEqual(channel.json_body["errcode"], "M_INCOMPATIBLE_ROOM_VERSION")
        self.assertEqual(channel.json_body["room_version"], "10")

    def test_make_join_refused_for_invite_only(self) -> None:
        """make_join for a room the user may not join is 403."""
        channel = self.make("join", self.room("private_chat"))
        self.assertEqual(channel.code, 403, channel.result_body)

    def test_make_join_for_other_servers_user(self) -> None:
        """A server may only ask for templates for its own users."""
        channel = self.make("join", self.room(), user_id="@eve:elsewhere.test")
        self.assertEqual(channel.code, 403, channel.result_body)

    def test_make_join_unknown_room(self) -> None:
        """make_join for a room we do not have is 404."""
        channel = self.make("join", "!nope:test")
        self.assertEqual(channel.code, 404, channel.result_body)

    def test_send_join_v2_state_and_auth_chain_verify(self) -> None:
        """send_join v2 persists the join and returns the state before it and an auth chain that verify."""
        for version in ("10", "12"):
            room_id = self.room(version=version)
            join, channel = self.handshake("join", room_id)
            self.assertEqual(channel.code, 200, channel.result_body)
            body = channel.json_body
            rv = KNOWN_ROOM_VERSIONS[version]
            state = self.hs.run(self.st.current_state.get_current_state_ids(room_id))
            self.assertEqual(state[("m.room.member", BOB)], join.event_id)
            returned_state = {e["event_id"] if "event_id" in e else Event(e, rv).event_id for e in body["state"]}
            expected = {eid for k, eid in state.items() if k != ("m.room.member", BOB)}
            self.assertEqual(returned_state, expected)
            self.assertFalse(body["members_omitted"])
            # Every returned event verifies with our keys, and the chain passes the auth rules in order.
            events = {}
            for pdu in body["auth_chain"] + body["state"]:
                checked = self.network.run(self.remote.keyring.verify_event_signatures(rv, pdu))
                self.assertEqual(checked, pdu)
                ev = Event(pdu, rv)
                events[ev.event_id] = ev
            create = next(e for e in events.values() if e.type == "m.room.create")
            for ev in sorted(events.values(), key=lambda e: e.depth):
                check_state_independent_auth_rules(rv, ev, events, create_event=create)

    def test_send_join_v1_wrapped(self) -> None:
        """send_join v1 answers ``[200, body]``."""
        _join, channel = self.handshake("join", self.room(), send_version="v1")
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(channel.json_body[0], 200)
        self.assertIn("auth_chain", channel.json_body[1])

    def test_send_join_wrong_membership(self) -> None:
        """send_join refuses an event that is not a join."""
        room_id = self.room()
        channel = self.make("join", room_id)
        template = dict(channel.json_body["event"])
        template["content"] = {"membership": "leave"}
        event = self.sign(KNOWN_ROOM_VERSIONS["10"], template)
        channel = self.remote.request(self.hs, "PUT",
                                      f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(event.event_id)}",
                                      event.get_pdu_json())
        self.assertEqual(channel.code, 400, channel.result_body)

    def test_send_join_id_mismatch(self) -> None:
        """The path's event id must be the event's."""
        room_id = self.room()
        channel = self.make("join", room_id)
        event = self.sign(KNOWN_ROOM_VERSIONS["10"], channel.json_body["event"])
        channel = self.remote.request(self.hs, "PUT", f"/_matrix/federation/v2/send_join/{q(room_id)}/%24other",
                                      event.get_pdu_json())
        self.assertEqual(channel.code, 403, channel.result_body)

    def test_leave_handshake(self) -> None:
        """After joining, make_leave/send_leave (v2 answers {}) makes the remote user leave."""
        room_id = self.room()
        self.handshake("join", room_id)
        leave, channel = self.handshake("leave", room_id)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(channel.json_body, {})
        membership = self.hs.run(self.st.current_state.get_membership(room_id, BOB))
        assert membership is not None
        self.assertEqual((membership.membership, membership.event_id), ("leave", leave.event_id))

    def test_knock_handshake(self) -> None:
        """make_knock/send_knock on a knock room answers with stripped state; the knock is in the room."""
        room_id = self.room("private_chat", initial_state=[
            {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}])
        knock, channel = self.handshake("knock", room_id, send_version="v1")
        self.assertEqual(channel.code, 200, channel.result_body)
        types = {s["type"] for s in channel.json_body["knock_room_state"]}
        self.assertIn("m.room.join_rules", types)
        membership = self.hs.run(self.st.current_state.get_membership(room_id, BOB))
        assert membership is not None
        self.assertEqual(membership.membership, "knock")

    def test_acl_applies_to_make_join(self) -> None:
        """A server denied by the room's ACL cannot make_join."""
        room_id = self.room(initial_state=[
            {"type": "m.room.server_acl", "state_key": "", "content": {"allow": ["*"], "deny": [REMOTE]}}])
        channel = self.make("join", room_id)
        self.assertEqual(channel.code, 403, channel.result_body)

    def test_invite_for_non_local_user_refused(self) -> None:
        """An invite whose invitee is not ours is refused."""
        channel = self.remote.request(self.hs, "PUT", "/_matrix/federation/v2/invite/%21r%3Aremote.test/%24x",
                                      {"event": {"type": "m.room.member"}, "room_version": "10"})
        self.assertEqual(channel.code, 403, channel.result_body)

    def test_invite_unknown_room_version(self) -> None:
        """An invite for a room version we do not support is 400 M_INCOMPATIBLE_ROOM_VERSION."""
        channel = self.remote.request(self.hs, "PUT", "/_matrix/federation/v2/invite/%21r%3Aremote.test/%24x",
                                      {"event": {}, "room_version": "999"})
        self.assertEqual(channel.code, 400, channel.result_body)
        self.assertEqual(channel.json_body["errcode"], "M_INCOMPATIBLE_ROOM_VERSION")

    def test_restricted_join_counter_signed(self) -> None:
        """A restricted join names a local authoriser, and send_join returns it with our signature added."""
        space = self.room()
        self.handshake("join", space)  # bob is in the allowed room
        room_id = self.room("private_chat", initial_state=[
            {"type": "m.room.join_rules", "state_key": "",
             "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}])
        channel = self.make("join", room_id)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(channel.json_body["event"]["content"]["join_authorised_via_users_server"], self.alice)
        rv = KNOWN_ROOM_VERSIONS[channel.json_body["room_version"]]
        event = self.sign(rv, channel.json_body["event"])
        channel = self.remote.request(self.hs, "PUT",
                                      f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(event.event_id)}",
                                      event.get_pdu_json())
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(set(channel.json_body["event"]["signatures"]), {REMOTE, "test"})
        membership = self.hs.run(self.st.current_state.get_membership(room_id, BOB))
        assert membership is not None
        self.assertEqual(membership.membership, "join")

    def test_restricted_join_refused_without_membership(self) -> None:
        """A user meeting no allow rule of a restricted room cannot get a join template."""
        space = self.room()
        room_id = self.room("private_chat", initial_state=[
            {"type": "m.room.join_rules", "state_key": "",
             "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}])
        self.assertEqual(self.make("join", room_id).code, 403)

    def test_invite_v1_for_local_user(self) -> None:
        """The v1 invite endpoint takes the bare event and answers ``[200, {"event": ...}]`` signed by us."""
        from tests.federation_flow.fake_room import FakeRoom

        room = FakeRoom(self.remote, KNOWN_ROOM_VERSIONS["1"], BOB)  # v1 invites are for v1/v2 rooms
        invite = room.add("m.room.member", BOB, {"membership": "invite"}, self.alice)
        pdu = dict(invite.get_pdu_json())
        pdu["unsigned"] = {"invite_room_state": [{"type": "m.room.name", "state_key": "", "sender": BOB,
                                                  "content": {"name": "Over there"}}]}
        channel = self.remote.request(
            self.hs, "PUT", f"/_matrix/federation/v1/invite/{q(room.room_id)}/{q(invite.event_id)}", pdu)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(channel.json_body[0], 200)
        self.assertIn("test", channel.json_body[1]["event"]["signatures"])
        membership = self.hs.run(self.st.current_state.get_membership(room.room_id, self.alice))
        assert membership is not None
        self.assertEqual(membership.membership, "invite")


class ServeOmitMembersTestCase(unittest.TestCase):
    """send_join v2 with ``omit_members=true`` (a partial-state join by the requesting server)."""

    def setUp(self) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(self)
        self.alice, self.alice_token = self.hs.create_user("alice")
        self.st = self.hs.components.core.stores
        self.locals = [self.hs.create_user(name)[0] for name in ("u1", "u2", "u3", "u4", "u5", "u6")]

    def full_room(self, **extra: Any) -> str:
        room_id = create_room(self.hs, self.alice, {"preset": "public_chat", "room_version": "10", **extra})
        for user in self.locals:
            join(self.hs, room_id, user)
        join(self.hs, room_id, "@zed:other.example")
        return room_id

    def send_join(self, room_id: str, omit: str = "true") -> tuple[Event, Any]:
        channel = self.remote.request(self.hs, "GET", f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(BOB)}?ver=10")
        self.assertEqual(channel.code, 200, channel.result_body)
        rv = KNOWN_ROOM_VERSIONS["10"]
        pdu = dict(channel.json_body["event"])
        pdu["origin_server_ts"] = 2_000_000
        event = Event(sign_event_dict(rv, add_content_hash(pdu), REMOTE, self.remote.signing_key), rv)
        path = f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(event.event_id)}?omit_members={omit}"
        return event, self.remote.request(self.hs, "PUT", path, event.get_pdu_json())

    def members_of(self, pdus: list[JsonDict]) -> list[str]:
        return sorted(p["state_key"] for p in pdus if p["type"] == "m.room.member")

    def test_named_room_omits_every_member(self) -> None:
        """A named room: no member events in state, members_omitted, servers_in_room, a complete auth chain."""
        room_id = self.full_room(name="Named")
        event, channel = self.send_join(room_id)
        self.assertEqual(channel.code, 200, channel.result_body)
        body = channel.json_body
        self.assertIs(body["members_omitted"], True)
        self.assertEqual(self.members_of(body["state"]), [])
        self.assertEqual(sorted(body["servers_in_room"]), ["other.example", "test"])
        types = {p["type"] for p in body["state"]}
        self.assertTrue({"m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.name"} <= types)
        rv = KNOWN_ROOM_VERSIONS["10"]
        chain_ids = {Event(p, rv).event_id for p in body["auth_chain"]}
        self.assertTrue(set(event.auth_event_ids()) <= chain_ids)
        # The auth chain is that of what was returned: the creator's membership (power levels' sender) only.
        self.assertEqual(self.members_of(body["auth_chain"]), [self.alice])

    def test_unnamed_room_keeps_heroes(self) -> None:
        """No name nor canonical alias: the first five joined members' memberships stay, the rest are omitted."""
        room_id = self.full_room()
        _event, channel = self.send_join(room_id)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(self.members_of(channel.json_body["state"]), sorted([self.alice, *self.locals[:4]]))

    def test_without_omit_members_full_state(self) -> None:
        """omit_members=false: every member is in the state and members_omitted is false."""
        room_id = self.full_room(name="Named")
        _event, channel = self.send_join(room_id, omit="false")
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertIs(channel.json_body["members_omitted"], False)
        self.assertEqual(self.members_of(channel.json_body["state"]),
                         sorted([self.alice, *self.locals, "@zed:other.example"]))

    def test_bad_omit_members_value(self) -> None:
        """omit_members must be true or false: anything else is a 400, not a 500."""
        room_id = self.full_room(name="Named")
        _event, channel = self.send_join(room_id, omit="yes")
        self.assertEqual(channel.code, 400, channel.result_body)
        self.assertEqual(channel.json_body["errcode"], "M_INVALID_PARAM")

    def test_partial_state_room_refuses_joins(self) -> None:
        """A room we hold only partial state of is not joined through us: make_join is 404."""
        room_id = self.full_room(name="Named")
        self.hs.run(self.st.partial_state.mark_partial(room_id, "$join", "elsewhere.example", ["elsewhere.example"]))
        channel = self.remote.request(self.hs, "GET", f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(BOB)}?ver=10")
        self.assertEqual(channel.code, 404, channel.result_body)
