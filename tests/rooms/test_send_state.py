"""Sending, state and redaction endpoints, and what the serialised events carry."""

from tests.rooms.utils import RoomsTestCase, q


class SendTests(RoomsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room = self.create_room(self.alice_tok, preset="public_chat")

    def test_txn_id_is_idempotent(self) -> None:
        """Repeating a PUT /send with the same txn id returns the same event and sends nothing new."""
        path = f"/rooms/{q(self.room)}/send/m.room.message/abc"
        first = self.req("PUT", path, {"msgtype": "m.text", "body": "once"}, self.alice_tok)
        second = self.req("PUT", path, {"msgtype": "m.text", "body": "once"}, self.alice_tok)
        self.assertEqual(first, second)
        page = self.messages(self.room, self.alice_tok, dir="b", limit=10, filter={"types": ["m.room.message"]})
        self.assertEqual(self.bodies(page["chunk"]), ["once"])

    def test_send_errors(self) -> None:
        """Non-members get 403, non-objects 400, unknown rooms 404, and m.room.create is refused."""
        self.req("PUT", f"/rooms/{q(self.room)}/send/m.room.message/1", {"body": "x"}, self.bob_tok, 403,
                 "M_FORBIDDEN")
        self.req("PUT", f"/rooms/{q(self.room)}/send/m.room.message/2", [1, 2], self.alice_tok, 400, "M_BAD_JSON")
        self.req("PUT", "/rooms/%21unknown%3Atest/send/m.room.message/3", {"body": "x"}, self.alice_tok, 404)
        self.req("PUT", f"/rooms/{q(self.room)}/send/m.room.create/4", {}, self.alice_tok, 403)

    def test_state_put_and_get_forms(self) -> None:
        """The empty state key may be omitted (with or without trailing slash) on PUT and GET."""
        base = f"/rooms/{q(self.room)}/state/m.room.topic"
        self.req("PUT", base, {"topic": "one"}, self.alice_tok)
        self.assertEqual(self.req("GET", base + "/", tok=self.alice_tok), {"topic": "one"})
        self.req("PUT", base + "/", {"topic": "two"}, self.alice_tok)
        self.assertEqual(self.req("GET", base, tok=self.alice_tok), {"topic": "two"})
        self.set_state(self.room, self.alice_tok, "org.example.keyed", {"v": 1}, state_key="dir/with slash")
        got = self.req("GET", f"/rooms/{q(self.room)}/state/org.example.keyed/{q('dir/with slash')}",
                       tok=self.alice_tok)
        self.assertEqual(got, {"v": 1})

    def test_state_format_event(self) -> None:
        """format=event returns the whole client event with prev_content; format=content just the content."""
        self.set_state(self.room, self.alice_tok, "m.room.name", {"name": "first"})
        self.set_state(self.room, self.alice_tok, "m.room.name", {"name": "second"})
        event = self.req("GET", f"/rooms/{q(self.room)}/state/m.room.name?format=event", tok=self.alice_tok)
        self.assertEqual(event["content"], {"name": "second"})
        self.assertEqual(event["state_key"], "")
        self.assertEqual(event["unsigned"]["prev_content"], {"name": "first"})
        self.assertEqual(event["room_id"], self.room)
        self.req("GET", f"/rooms/{q(self.room)}/state/m.room.name?format=xml", tok=self.alice_tok, expect=400)

    def test_state_not_found_and_forbidden(self) -> None:
        """A missing state key is 404; a non-member of a non-world-readable room gets 403."""
        self.req("GET", f"/rooms/{q(self.room)}/state/m.room.avatar", tok=self.alice_tok, expect=404,
                 errcode="M_NOT_FOUND")
        self.req("GET", f"/rooms/{q(self.room)}/state/m.room.name", tok=self.bob_tok, expect=403,
                 errcode="M_FORBIDDEN")
        self.req("GET", f"/rooms/{q(self.room)}/state", tok=self.bob_tok, expect=403)

    def test_full_state(self) -> None:
        """GET /state lists every current state event, with state keys and prev_content where replaced."""
        self.set_state(self.room, self.alice_tok, "m.room.topic", {"topic": "a"})
        self.set_state(self.room, self.alice_tok, "m.room.topic", {"topic": "b"})
        state = self.req("GET", f"/rooms/{q(self.room)}/state", tok=self.alice_tok)
        keys = {(e["type"], e["state_key"]) for e in state}
        self.assertIn(("m.room.create", ""), keys)
        self.assertIn(("m.room.member", self.alice), keys)
        topic = [e for e in state if e["type"] == "m.room.topic"][0]
        self.assertEqual((topic["content"], topic["unsigned"]["prev_content"]), ({"topic": "b"}, {"topic": "a"}))

    def test_left_user_sees_state_when_they_left(self) -> None:
        """A departed user reads the state as it was when they left."""
        self.join(self.room, self.bob_tok)
        self.set_state(self.room, self.alice_tok, "m.room.topic", {"topic": "old"})
        self.leave(self.room, self.bob_tok)
        self.set_state(self.room, self.alice_tok, "m.room.topic", {"topic": "new"})
        self.assertEqual(self.req("GET", f"/rooms/{q(self.room)}/state/m.room.topic", tok=self.bob_tok),
                         {"topic": "old"})

    def test_power_levels_enforced(self) -> None:
        """A member without the power to set a state event gets 403."""
        self.join(self.room, self.bob_tok)
        self.set_state(self.room, self.bob_tok, "m.room.name", {"name": "mine"}, expect=403)

    def test_canonical_alias_checked(self) -> None:
        """m.room.canonical_alias: malformed aliases are M_INVALID_PARAM, aliases of other rooms M_BAD_ALIAS."""
        other = self.create_room(self.alice_tok)
        self.req("PUT", f"/directory/room/{q('#mine:test')}", {"room_id": self.room}, self.alice_tok)
        self.req("PUT", f"/directory/room/{q('#theirs:test')}", {"room_id": other}, self.alice_tok)
        base = f"/rooms/{q(self.room)}/state/m.room.canonical_alias"
        self.req("PUT", base, {"alias": "not-an-alias"}, self.alice_tok, 400, "M_INVALID_PARAM")
        self.req("PUT", base, {"alias": "#theirs:test"}, self.alice_tok, 400, "M_BAD_ALIAS")
        self.req("PUT", base, {"alias": "#unmapped:test"}, self.alice_tok, 400, "M_BAD_ALIAS")
        self.req("PUT", base, {"alias": "#mine:test", "alt_aliases": ["#theirs:test"]}, self.alice_tok, 400,
                 "M_BAD_ALIAS")
        self.req("PUT", base, {"alias": "#mine:test", "alt_aliases": ["#elsewhere:remote.example"]},
                 self.alice_tok)

    def test_membership_via_state(self) -> None:
        """PUT state m.room.member invites, kicks and bans like the membership endpoints."""
        member = f"/rooms/{q(self.room)}/state/m.room.member/"
        self.req("PUT", member + q(self.bob), {"membership": "invite"}, self.alice_tok)
        self.req("PUT", member + q(self.bob), {"membership": "join"}, self.bob_tok)
        self.assertEqual(self.req("GET", member + q(self.bob), tok=self.alice_tok)["membership"], "join")
        self.req("PUT", member + q(self.bob), {"membership": "leave", "reason": "bye"}, self.alice_tok)
        kicked = self.req("GET", member + q(self.bob), tok=self.alice_tok)
        self.assertEqual((kicked["membership"], kicked["reason"]), ("leave", "bye"))
        self.req("PUT", member + q(self.bob), {"membership": "ban"}, self.alice_tok)
        self.req("PUT", member + q(self.bob), {"membership": "leave"}, self.alice_tok)  # unban
        self.req("PUT", member + q(self.bob), {"membership": "dance"}, self.alice_tok, 400)
        self.req("PUT", member + q(self.bob), {"membership": "join"}, self.alice_tok, 403)


class RedactionTests(RoomsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room = self.create_room(self.alice_tok, preset="public_chat")
        self.join(self.room, self.bob_tok)

    def test_redact_own_event(self) -> None:
        """Redacting prunes the event; readers see it with unsigned.redacted_because."""
        event_id = self.send(self.room, self.bob_tok, "oops")
        redaction = self.req("PUT", f"/rooms/{q(self.room)}/redact/{q(event_id)}/r1", {"reason": "typo"},
                             self.bob_tok)["event_id"]
        ev = self.req("GET", f"/rooms/{q(self.room)}/event/{q(event_id)}", tok=self.alice_tok)
        self.assertEqual(ev["content"], {})
        because = ev["unsigned"]["redacted_because"]
        self.assertEqual((because["event_id"], because["content"]["reason"]), (redaction, "typo"))
        self.assertEqual(because["redacts"], event_id)

    def test_redact_idempotent_by_txn(self) -> None:
        """Repeating a redaction with the same txn id returns the same redaction event."""
        event_id = self.send(self.room, self.bob_tok, "x")
        path = f"/rooms/{q(self.room)}/redact/{q(event_id)}/same"
        self.assertEqual(self.req("PUT", path, {}, self.bob_tok), self.req("PUT", path, {}, self.bob_tok))

    def test_redact_others_needs_power(self) -> None:
        """Redacting another user's event needs the redact level: bob cannot, alice (admin) can."""
        event_id = self.send(self.room, self.alice_tok, "mine")
        self.req("PUT", f"/rooms/{q(self.room)}/redact/{q(event_id)}/r2", {}, self.bob_tok, 403)
        victim = self.send(self.room, self.bob_tok, "bad")
        self.req("PUT", f"/rooms/{q(self.room)}/redact/{q(victim)}/r3", {}, self.alice_tok)

    def test_redaction_through_send(self) -> None:
        """PUT /send/m.room.redaction with content.redacts redacts too; without it the request is 400."""
        event_id = self.send(self.room, self.bob_tok, "x")
        self.send(self.room, self.bob_tok, event_type="m.room.redaction", content={"redacts": event_id})
        ev = self.req("GET", f"/rooms/{q(self.room)}/event/{q(event_id)}", tok=self.bob_tok)
        self.assertIn("redacted_because", ev["unsigned"])
        self.req("PUT", f"/rooms/{q(self.room)}/send/m.room.redaction/x9", {}, self.bob_tok, 400)

    def test_bad_reason(self) -> None:
        """A non-string redaction reason is 400 M_BAD_JSON."""
        event_id = self.send(self.room, self.bob_tok, "x")
        self.req("PUT", f"/rooms/{q(self.room)}/redact/{q(event_id)}/r5", {"reason": 5}, self.bob_tok, 400,
                 "M_BAD_JSON")
