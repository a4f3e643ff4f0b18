"""Inbound transactions (PUT /send): receipt checks, auth, soft failure, gaps, idempotency, limits, ACLs."""

from __future__ import annotations

import urllib.parse
from typing import Any, Optional

from twisted.trial import unittest

from matrixd.events.event import Event, JsonDict
from matrixd.handlers.events.creation import EventSpec
from matrixd.testing.federation import FakeRemoteServer
from tests.federation.utils import REMOTE, create_room, make_federating_homeserver
from tests.federation_flow.utils import remote_event, send_transaction

BOB = f"@bob:{REMOTE}"


class InboundTransactionTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(self)
        self.alice, self.alice_token = self.hs.create_user("alice")
        self.room_id = create_room(self.hs, self.alice, {"preset": "public_chat"})
        self.st = self.hs.components.core.stores

    # -- helpers ---------------------------------------------------------------------

    def event(self, sender: str, event_type: str, content: JsonDict, state_key: Optional[str] = None,
              **kwargs: Any) -> Event:
        return remote_event(self.hs, self.remote, self.room_id, sender, event_type, content, state_key, **kwargs)

    def send(self, *events: Any, txn_id: Optional[str] = None, origin: Optional[FakeRemoteServer] = None) -> Any:
        pdus = [e.get_pdu_json() if isinstance(e, Event) else e for e in events]
        channel = send_transaction(self.hs, origin or self.remote, pdus, txn_id=txn_id)
        self.assertEqual(channel.code, 200, channel.result_body)
        return channel.json_body["pdus"]

    def stored(self, event_id: str) -> Optional[Event]:
        event: Optional[Event] = self.hs.run(self.st.events.get_event(event_id))
        return event

    def join_bob(self) -> Event:
        join = self.event(BOB, "m.room.member", {"membership": "join"}, BOB)
        self.assertEqual(self.send(join), {join.event_id: {}})
        return join

    def local_send(self, sender: str, event_type: str, content: JsonDict, state_key: Optional[str] = None) -> str:
        persisted = self.hs.run(self.hs.components.core.creation.send(
            self.room_id, EventSpec(event_type, sender, content, state_key)))
        event_id: str = persisted.event.event_id
        return event_id

    # -- tests -----------------------------------------------------------------------

    def test_join_and_message_accepted(self) -> None:
        """A valid join then message become timeline events; the join updates current state and extremities."""
        join = self.join_bob()
        state = self.hs.run(self.st.current_state.get_current_state_ids(self.room_id))
        self.assertEqual(state[("m.room.member", BOB)], join.event_id)
        msg = self.event(BOB, "m.room.message", {"msgtype": "m.text", "body": "hi"})
        self.assertEqual(self.send(msg), {msg.event_id: {}})
        self.assertEqual(self.hs.run(self.st.events.get_latest_event_ids_in_room(self.room_id)), [msg.event_id])
        stored = self.stored(msg.event_id)
        assert stored is not None
        self.assertFalse(stored.internal_metadata.outlier)
        self.assertEqual(stored.content["body"], "hi")

    def test_message_visible_to_local_client(self) -> None:
        """A remote message shows up in the room's /messages for a local member."""
        self.join_bob()
        msg = self.event(BOB, "m.room.message", {"msgtype": "m.text", "body": "visible"})
        self.send(msg)
        room = urllib.parse.quote(self.room_id)
        channel = self.hs.request("GET", f"/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=5",
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertIn(msg.event_id, [e["event_id"] for e in channel.json_body["chunk"]])

    def test_forged_signature_dropped(self) -> None:
        """A PDU signed with a key that is not the sender server's is dropped with an error."""
        other = FakeRemoteServer(self.network, "other.test")
        forged = remote_event(self.hs, other, self.room_id, BOB, "m.room.member", {"membership": "join"}, BOB)
        pdu = dict(forged.get_pdu_json())
        (signature,) = pdu["signatures"]["other.test"].values()
        pdu["signatures"] = {REMOTE: {self.remote.key_id: signature}}
        result = self.send(pdu)
        (error,) = result.values()
        self.assertIn("signature", error["error"])
        self.assertIsNone(self.stored(forged.event_id))

    def test_bad_content_hash_stored_redacted(self) -> None:
        """A PDU whose content does not match its hash is processed in its redacted form."""
        self.join_bob()
        msg = self.event(BOB, "m.room.message", {"msgtype": "m.text", "body": "original"})
        pdu = dict(msg.get_pdu_json())
        pdu["content"] = {"msgtype": "m.text", "body": "tampered"}
        self.assertEqual(self.send(pdu), {msg.event_id: {}})
        stored = self.stored(msg.event_id)
        assert stored is not None
        self.assertEqual(stored.content, {})

    def test_event_failing_auth_rejected(self) -> None:
        """A message from a server user who never joined is rejected: stored, but not in the timeline."""
        msg = self.event(BOB, "m.room.message", {"msgtype": "m.text", "body": "intruder"})
        result = self.send(msg)
        self.assertIn("rejected", result[msg.event_id]["error"])
        stored = self.stored(msg.event_id)
        assert stored is not None
        self.assertIsNotNone(stored.internal_metadata.rejected_reason)
        self.assertNotIn(msg.event_id, self.hs.run(self.st.events.get_latest_event_ids_in_room(self.room_id)))

    def test_soft_failed_against_current_state(self) -> None:
        """An event allowed by its prev state but not by current state (sender banned since) is soft-failed."""
        join = self.join_bob()
        state_at_join = self.hs.run(self.st.current_state.get_current_state_ids(self.room_id))
        self.local_send(self.alice, "m.room.member", {"membership": "ban"}, BOB)
        msg = self.event(BOB, "m.room.message", {"msgtype": "m.text", "body": "sneaky"},
                         prev_events=[join], state=state_at_join)
        self.assertEqual(self.send(msg), {msg.event_id: {}})
        stored = self.stored(msg.event_id)
        assert stored is not None
        self.assertTrue(stored.internal_metadata.soft_failed)
        self.assertNotIn(msg.event_id, self.hs.run(self.st.events.get_latest_event_ids_in_room(self.room_id)))

    def test_missing_prev_events_fetched(self) -> None:
        """A gap before a PDU is filled with /get_missing_events; all events join the timeline in order."""
        join = self.event(BOB, "m.room.member", {"membership": "join"}, BOB)
        state = dict(self.hs.run(self.st.current_state.get_current_state_ids(self.room_id)))
        state[("m.room.member", BOB)] = join.event_id
        m1 = self.event(BOB, "m.room.message", {"msgtype": "m.text", "body": "one"}, prev_events=[join],
                        state=state, ts=1)
        m2 = self.event(BOB, "m.room.message", {"msgtype": "m.text", "body": "two"}, prev_events=[m1],
                        state=state, ts=2)

        async def missing(origin: str, content: Any, request: Any, room_id: str) -> tuple[int, JsonDict]:
            return 200, {"events": [join.get_pdu_json(), m1.get_pdu_json()]}

        self.remote.handle("POST", "/_matrix/federation/v1/get_missing_events/(?P<room_id>[^/]*)", missing)
        self.assertEqual(self.send(m2), {m2.event_id: {}})
        for ev in (join, m1, m2):
            stored = self.stored(ev.event_id)
            assert stored is not None, ev
            self.assertFalse(stored.internal_metadata.outlier)
        self.assertEqual(self.hs.run(self.st.events.get_latest_event_ids_in_room(self.room_id)), [m2.event_id])
        state_now = self.hs.run(self.st.current_state.get_current_state_ids(self.room_id))
        self.assertEqual(state_now[("m.room.member", BOB)], join.event_id)

    def test_gap_filled_from_state_ids(self) -> None:
        """When /get_missing_events cannot close the gap, the state at the event is fetched and used."""
        join = self.event(BOB, "m.room.member", {"membership": "join"}, BOB)
        state = dict(self.hs.run(self.st.current_state.get_current_state_ids(self.room_id)))
        state[("m.room.member", BOB)] = join.event_id
        m1 = self.event(BOB, "m.room.message", {"msgtype": "m.text", "body": "one"}, prev_events=[join],
                        state=state, ts=1)
        m2 = self.event(BOB, "m.room.message", {"msgtype": "m.text", "body": "two"}, prev_events=[m1],
                        state=state, ts=2)
        by_id = {e.event_id: e for e in (join, m1)}
        chain = self.hs.run(self.st.events.get_auth_chain_ids(list(state.values())))

        async def missing(origin: str, content: Any, request: Any, room_id: str) -> tuple[int, JsonDict]:
            return 200, {"events": []}

        async def state_ids(origin: str, content: Any, request: Any, room_id: str) -> tuple[int, JsonDict]:
            return 200, {"pdu_ids": sorted(state.values()), "auth_chain_ids": sorted(chain)}

        async def get_event(origin: str, content: Any, request: Any, event_id: str) -> tuple[int, JsonDict]:
            event_id = urllib.parse.unquote(event_id)
            ev = by_id.get(event_id) or self.stored(event_id)
            assert ev is not None
            return 200, {"origin": REMOTE, "origin_server_ts": 0, "pdus": [ev.get_pdu_json()]}

        self.remote.handle("POST", "/_matrix/federation/v1/get_missing_events/(?P<room_id>[^/]*)", missing)
        self.remote.handle("GET", "/_matrix/federation/v1/state_ids/(?P<room_id>[^/]*)", state_ids)
        self.remote.handle("GET", "/_matrix/federation/v1/event/(?P<event_id>[^/]*)", get_event)
        self.assertEqual(self.send(m2), {m2.event_id: {}})
        stored_join = self.stored(join.event_id)
        assert stored_join is not None
        self.assertTrue(stored_join.internal_metadata.outlier)
        state_now = self.hs.run(self.st.current_state.get_current_state_ids(self.room_id))
        self.assertEqual(state_now[("m.room.member", BOB)], join.event_id)
        self.assertIn(m2.event_id, self.hs.run(self.st.events.get_latest_event_ids_in_room(self.room_id)))

    def test_duplicate_transaction_answered_from_store(self) -> None:
        """A repeated transaction id from the same origin gets the first answer and is not reprocessed."""
        join = self.event(BOB, "m.room.member", {"membership": "join"}, BOB)
        first = self.send(join, txn_id="dup")
        msg = self.event(BOB, "m.room.message", {"msgtype": "m.text", "body": "later"})
        second = self.send(msg, txn_id="dup")
        self.assertEqual(first, second)
        self.assertIsNone(self.stored(msg.event_id))

    def test_too_many_pdus(self) -> None:
        """More than 50 PDUs is a 400 and nothing is processed."""
        join = self.event(BOB, "m.room.member", {"membership": "join"}, BOB)
        channel = send_transaction(self.hs, self.remote, [join.get_pdu_json()] * 51)
        self.assertEqual(channel.code, 400, channel.result_body)
        self.assertIsNone(self.stored(join.event_id))

    def test_too_many_edus(self) -> None:
        """More than 100 EDUs is a 400."""
        channel = send_transaction(self.hs, self.remote, [], edus=[{"edu_type": "m.typing", "content": {}}] * 101)
        self.assertEqual(channel.code, 400, channel.result_body)

    def test_acl_denied_origin(self) -> None:
        """A PDU from a server the room's ACL denies gets an error and is not stored."""
        self.local_send(self.alice, "m.room.server_acl", {"allow": ["*"], "deny": [REMOTE]}, "")
        join = self.event(BOB, "m.room.member", {"membership": "join"}, BOB)
        result = self.send(join)
        self.assertIn("ACL", result[join.event_id]["error"])
        self.assertIsNone(self.stored(join.event_id))

    def test_unknown_room(self) -> None:
        """A PDU for a room we do not know gets an error for that PDU only."""
        join = self.event(BOB, "m.room.member", {"membership": "join"}, BOB)
        pdu = dict(join.get_pdu_json())
        pdu["room_id"] = "!nowhere:remote.test"
        good = self.event(BOB, "m.room.member", {"membership": "join"}, BOB)
        result = self.send(pdu, good)
        self.assertEqual(result[good.event_id], {})
        errors = [v for k, v in result.items() if k != good.event_id]
        self.assertEqual(len(errors), 1)
        self.assertIn("Unknown room", errors[0]["error"])

    def test_sender_not_of_origin(self) -> None:
        """A server may not send events of another server's users in its transactions."""
        other = FakeRemoteServer(self.network, "other.test")
        join = self.event(BOB, "m.room.member", {"membership": "join"}, BOB)
        result = self.send(join, origin=other)
        self.assertIn("may not send", result[join.event_id]["error"])

    def test_edus_routed_by_type(self) -> None:
        """EDUs reach the handler registered for their type; unknown types are ignored."""
        seen: list[tuple[str, JsonDict]] = []

        async def on_typing(origin: str, content: JsonDict) -> None:
            seen.append((origin, content))

        self.hs.components.federation_out.edus.register("org.example.typing", on_typing)
        channel = send_transaction(self.hs, self.remote, [], edus=[
            {"edu_type": "org.example.typing", "content": {"room_id": self.room_id, "user_id": BOB, "typing": True}},
            {"edu_type": "org.example.unknown", "content": {}},
        ])
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(seen, [(REMOTE, {"room_id": self.room_id, "user_id": BOB, "typing": True})])

    def test_edus_of_acl_denied_room_dropped(self) -> None:
        """An EDU naming a room whose ACL denies the origin is not handed on."""
        seen: list[JsonDict] = []

        async def on_edu(origin: str, content: JsonDict) -> None:
            seen.append(content)

        self.hs.components.federation_out.edus.register("org.example.typing", on_edu)
        self.local_send(self.alice, "m.room.server_acl", {"allow": ["*"], "deny": [REMOTE]}, "")
        channel = send_transaction(self.hs, self.remote, [], edus=[
            {"edu_type": "org.example.typing", "content": {"room_id": self.room_id}}])
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(seen, [])

    def test_origin_mismatch_in_body(self) -> None:
        """A body naming another origin than the signed one is refused."""
        channel = self.remote.request(self.hs, "PUT", "/_matrix/federation/v1/send/x",
                                      {"origin": "other.test", "pdus": [], "edus": []})
        self.assertEqual(channel.code, 400, channel.result_body)

    def test_fork_merges_into_current_state(self) -> None:
        """A state event on an older branch becomes current state by resolution; both branch tips stay extremities."""
        self.local_send(self.alice, "m.room.power_levels",
                        {"users": {BOB: 50}, "state_default": 50}, "")  # v12: creators are not listed
        join = self.join_bob()
        state_at_join = self.hs.run(self.st.current_state.get_current_state_ids(self.room_id))
        local = self.local_send(self.alice, "m.room.message", {"msgtype": "m.text", "body": "meanwhile"})
        topic = self.event(BOB, "m.room.topic", {"topic": "from the fork"}, "", prev_events=[join],
                           state=state_at_join)
        self.assertEqual(self.send(topic), {topic.event_id: {}})
        current = self.hs.run(self.st.current_state.get_current_state_ids(self.room_id))
        self.assertEqual(current[("m.room.topic", "")], topic.event_id)
        latest = self.hs.run(self.st.events.get_latest_event_ids_in_room(self.room_id))
        self.assertEqual(sorted(latest), sorted([local, topic.event_id]))

    def test_current_state_is_the_resolution_of_all_extremities(self) -> None:
        """A local moderator names the room (N1); a remote admin demotes him (P2, after N1) while he renames
        it (N2, after N1). Each event received on P2's branch leaves the room's state the resolution of the
        states at every forward extremity (no name: both names fail against P2), not the current state
        resolved against the branch (in v2.1 that brings N1 back once P2 is no longer conflicted)."""
        carol, _ = self.hs.create_user("carol")
        self.local_send(self.alice, "m.room.power_levels",
                        {"users": {BOB: 100, carol: 50}, "state_default": 50}, "")
        self.join_bob()
        self.local_send(carol, "m.room.member", {"membership": "join"}, carol)
        n1 = self.stored(self.local_send(carol, "m.room.name", {"name": "one"}, ""))
        assert n1 is not None
        state_at_n1 = self.hs.run(self.st.current_state.get_current_state_ids(self.room_id))
        self.local_send(carol, "m.room.name", {"name": "two"}, "")  # N2, after N1
        demote = self.event(BOB, "m.room.power_levels", {"users": {BOB: 100, carol: 0}, "state_default": 50}, "",
                            prev_events=[n1], state=state_at_n1, ts=1)
        state_after_p2 = {**state_at_n1, ("m.room.power_levels", ""): demote.event_id}
        merge_a = self.event(BOB, "m.room.message", {"msgtype": "m.text", "body": "after"},
                             prev_events=[demote], state=state_after_p2, ts=2)
        core = self.hs.components.core
        rv = self.hs.run(self.st.rooms.get_room_version(self.room_id))

        def assert_current_is_resolved() -> None:
            current = self.hs.run(self.st.current_state.get_current_state_ids(self.room_id))
            self.assertNotIn(("m.room.name", ""), current)
            self.assertEqual(current[("m.room.power_levels", "")], demote.event_id)
            extremities = self.hs.run(self.st.events.get_latest_event_ids_in_room(self.room_id))
            at = self.hs.run(core.state_calc.state_after_events(self.room_id, rv, extremities))
            self.assertEqual(dict(current), dict(at.state_ids))

        for ev in (demote, merge_a):
            self.assertEqual(self.send(ev), {ev.event_id: {}})
            assert_current_is_resolved()
        # A local event merging the forks sees (and keeps) the same state.
        merge_b = self.local_send(carol, "m.room.message", {"msgtype": "m.text", "body": "merged"})
        self.assertEqual(self.hs.run(self.st.events.get_latest_event_ids_in_room(self.room_id)), [merge_b])
        assert_current_is_resolved()

    def test_remote_redactions_of_local_events_follow_power(self) -> None:
        """A received redaction of another server's event applies when its sender may redact (power level
        in the state before it), and not otherwise (room v3+ "Handling redactions")."""
        self.join_bob()
        mine = self.local_send(self.alice, "m.room.message", {"msgtype": "m.text", "body": "one"})
        other = self.local_send(self.alice, "m.room.message", {"msgtype": "m.text", "body": "two"})
        # bob (power 0) redacts: stored, not applied.
        weak = self.event(BOB, "m.room.redaction", {"redacts": mine})
        self.assertEqual(self.send(weak), {weak.event_id: {}})
        stored = self.stored(mine)
        assert stored is not None
        self.assertEqual(stored.content["body"], "one")
        # Raised to moderator by alice, bob's redaction applies.
        levels = self.hs.run(self.st.current_state.get_current_state_event(self.room_id, "m.room.power_levels", ""))
        assert levels is not None
        content = dict(levels.content)
        content["users"] = {**content.get("users", {}), BOB: 50}
        self.local_send(self.alice, "m.room.power_levels", content, "")
        strong = self.event(BOB, "m.room.redaction", {"redacts": other})
        self.assertEqual(self.send(strong), {strong.event_id: {}})
        stored = self.stored(other)
        assert stored is not None
        self.assertEqual(stored.content, {})
