"""createRoom and the membership endpoints through the client API."""

from matrixd.testing.homeserver import make_homeserver
from tests.rooms.utils import RoomsTestCase, q


class CreateRoomTests(RoomsTestCase):
    def test_create_with_options(self) -> None:
        """createRoom applies name, topic, alias, invitees and room_version."""
        room = self.create_room(self.alice_tok, name="N", topic="T", room_alias_name="made", invite=[self.bob],
                                room_version="10")
        state = {(e["type"], e["state_key"]): e for e in self.req("GET", f"/rooms/{q(room)}/state",
                                                                   tok=self.alice_tok)}
        self.assertEqual(state[("m.room.name", "")]["content"]["name"], "N")
        self.assertEqual(state[("m.room.topic", "")]["content"]["topic"], "T")
        self.assertEqual(state[("m.room.canonical_alias", "")]["content"]["alias"], "#made:test")
        self.assertEqual(state[("m.room.member", self.bob)]["content"]["membership"], "invite")
        self.assertEqual(state[("m.room.create", "")]["content"]["room_version"], "10")
        self.assertEqual(self.req("GET", f"/directory/room/{q('#made:test')}")["room_id"], room)

    def test_create_errors(self) -> None:
        """Unknown versions, taken aliases, refused initial state and bad bodies are 400s with the spec's codes."""
        self.req("POST", "/createRoom", {"room_version": "999"}, self.alice_tok, 400, "M_UNSUPPORTED_ROOM_VERSION")
        self.req("POST", "/createRoom", {"room_version": 10}, self.alice_tok, 400, "M_UNSUPPORTED_ROOM_VERSION")
        self.create_room(self.alice_tok, room_alias_name="taken")
        self.req("POST", "/createRoom", {"room_alias_name": "taken"}, self.bob_tok, 400, "M_ROOM_IN_USE")
        self.req("POST", "/createRoom", {
            "room_version": "10", "name": "x",
            "power_level_content_override": {"users": {self.alice: 100}, "events": {"m.room.name": 101}},
        }, self.alice_tok, 400, "M_INVALID_ROOM_STATE")
        self.req("POST", "/createRoom", {"visibility": "sideways"}, self.alice_tok, 400)
        self.req("POST", "/createRoom", {"invite": "not a list"}, self.alice_tok, 400, "M_BAD_JSON")
        self.req("POST", "/createRoom", [], self.alice_tok, 400, "M_BAD_JSON")
        self.req("POST", "/createRoom", {}, None, 401, "M_MISSING_TOKEN")
        self.assertEqual(self.req("GET", "/joined_rooms", tok=self.bob_tok)["joined_rooms"], [])

    def test_public_visibility_publishes(self) -> None:
        """visibility=public lists the new room in the directory."""
        room = self.create_room(self.alice_tok, visibility="public")
        self.assertEqual(self.req("GET", f"/directory/list/room/{q(room)}"), {"visibility": "public"})


class MembershipTests(RoomsTestCase):
    def test_join_by_id_and_alias(self) -> None:
        """Joining works by room id (both endpoints) and by alias, which resolves to the room id."""
        room = self.create_room(self.alice_tok, preset="public_chat", room_alias_name="pub")
        self.assertEqual(self.req("POST", f"/join/{q('#pub:test')}", {}, self.bob_tok), {"room_id": room})
        self.assertEqual(self.req("POST", f"/join/{q(room)}?via=test", {}, self.carol_tok), {"room_id": room})
        self.assertEqual(self.req("GET", "/joined_rooms", tok=self.carol_tok)["joined_rooms"], [room])
        joined = self.req("GET", f"/rooms/{q(room)}/joined_members", tok=self.bob_tok)["joined"]
        self.assertEqual(sorted(joined), sorted([self.alice, self.bob, self.carol]))
        self.assertEqual(joined[self.bob], {"display_name": "bob"})

    def test_join_errors(self) -> None:
        """Unknown aliases are 404, garbage is 400, invite-only rooms 403, unknown rooms 404."""
        self.req("POST", f"/join/{q('#nothing:test')}", {}, self.bob_tok, 404, "M_NOT_FOUND")
        self.req("POST", "/join/garbage", {}, self.bob_tok, 400)
        private = self.create_room(self.alice_tok, preset="private_chat")
        self.join(private, self.bob_tok, expect=403)
        self.req("POST", f"/join/{q('!unknown:test')}", {}, self.bob_tok, 404)
        self.req("POST", f"/rooms/{q(private)}/join", {"reason": 3}, self.bob_tok, 400, "M_BAD_JSON")

    def test_invite_join_leave_forget(self) -> None:
        """Invite, join with a reason, leave, forget; forgetting while joined is refused."""
        room = self.create_room(self.alice_tok, preset="private_chat")
        self.invite(room, self.alice_tok, self.bob)
        self.req("POST", f"/rooms/{q(room)}/join", {"reason": "hello"}, self.bob_tok)
        member = self.req("GET", f"/rooms/{q(room)}/state/m.room.member/{q(self.bob)}", tok=self.bob_tok)
        self.assertEqual((member["membership"], member["reason"]), ("join", "hello"))
        self.req("POST", f"/rooms/{q(room)}/forget", {}, self.bob_tok, 400)
        self.leave(room, self.bob_tok)
        self.req("POST", f"/rooms/{q(room)}/forget", None, self.bob_tok)
        self.assertEqual(self.req("GET", "/joined_rooms", tok=self.bob_tok)["joined_rooms"], [])

    def test_invite_errors(self) -> None:
        """Invites need a user_id string and the invite power; 3pid invites are refused."""
        room = self.create_room(self.alice_tok, preset="public_chat")
        self.req("POST", f"/rooms/{q(room)}/invite", {}, self.alice_tok, 400, "M_MISSING_PARAM")
        self.req("POST", f"/rooms/{q(room)}/invite", {"user_id": 5}, self.alice_tok, 400, "M_BAD_JSON")
        self.req("POST", f"/rooms/{q(room)}/invite", {"user_id": "nope"}, self.alice_tok, 400)
        self.req("POST", f"/rooms/{q(room)}/invite", {"id_server": "x", "medium": "email", "address": "a@b"},
                 self.alice_tok, 400)
        self.join(room, self.bob_tok)
        self.req("POST", f"/rooms/{q(room)}/invite", {"user_id": self.carol}, self.bob_tok, 403)  # public_chat: 50

    def test_kick_ban_unban(self) -> None:
        """Kick and ban need power; a banned user cannot rejoin until unbanned."""
        room = self.create_room(self.alice_tok, preset="public_chat")
        self.join(room, self.bob_tok)
        self.join(room, self.carol_tok)
        self.req("POST", f"/rooms/{q(room)}/kick", {"user_id": self.carol}, self.bob_tok, 403)
        self.req("POST", f"/rooms/{q(room)}/kick", {"user_id": self.bob, "reason": "r"}, self.alice_tok)
        self.join(room, self.bob_tok)
        self.req("POST", f"/rooms/{q(room)}/ban", {"user_id": self.bob}, self.alice_tok)
        self.join(room, self.bob_tok, expect=403)
        self.req("POST", f"/rooms/{q(room)}/unban", {"user_id": self.carol}, self.alice_tok, 403)
        self.req("POST", f"/rooms/{q(room)}/unban", {"user_id": self.bob}, self.alice_tok)
        self.join(room, self.bob_tok)
        self.req("POST", f"/rooms/{q(room)}/kick", {}, self.alice_tok, 400, "M_MISSING_PARAM")

    def test_knock(self) -> None:
        """Knocking on a knock room works by id and alias; on a public room it is refused."""
        room = self.create_room(self.alice_tok, preset="private_chat", room_alias_name="door")
        self.set_state(room, self.alice_tok, "m.room.join_rules", {"join_rule": "knock"})
        self.assertEqual(self.req("POST", f"/knock/{q('#door:test')}", {"reason": "let me in"}, self.bob_tok),
                         {"room_id": room})
        member = self.req("GET", f"/rooms/{q(room)}/state/m.room.member/{q(self.bob)}", tok=self.alice_tok)
        self.assertEqual(member["membership"], "knock")
        public = self.create_room(self.alice_tok, preset="public_chat")
        self.req("POST", f"/knock/{q(public)}", {}, self.carol_tok, 403)

    def test_guest_join_needs_guest_access(self) -> None:
        """Guests may join only rooms with guest_access can_join, and may not knock or create rooms."""
        user_id = "@guest1:test"
        accounts = self.hs.components.accounts
        self.hs.run(accounts.users.create_user(user_id, None, is_guest=True))
        self.hs.run(accounts.devices.store_device(user_id, "G", None))
        self.hs.run(accounts.tokens.add_access_token(user_id, "G", "guest_token"))
        forbidden = self.create_room(self.alice_tok, preset="public_chat")  # guest_access forbidden
        self.join(forbidden, "guest_token", expect=403)
        allowed = self.create_room(self.alice_tok, preset="public_chat")
        self.set_state(allowed, self.alice_tok, "m.room.guest_access", {"guest_access": "can_join"})
        self.join(allowed, "guest_token")
        self.req("POST", "/createRoom", {}, "guest_token", 403, "M_GUEST_ACCESS_FORBIDDEN")

    def test_joins_rate_limited(self) -> None:
        """Joins beyond rc_joins.local's burst are 429 M_LIMIT_EXCEEDED with retry_after_ms."""
        self.hs = make_homeserver(self, {"rc_joins": {"local": {"per_second": 0.1, "burst_count": 2}}})
        _, tok = self.hs.create_user("bob2")
        _, alice_tok = self.hs.create_user("alice2")
        rooms = [str(self.req("POST", "/createRoom", {"preset": "public_chat"}, alice_tok)["room_id"])
                 for _ in range(3)]
        self.join(rooms[0], tok)
        self.join(rooms[1], tok)
        body = self.join(rooms[2], tok, expect=429)
        self.assertEqual(body["errcode"], "M_LIMIT_EXCEEDED")
        self.assertIn("retry_after_ms", body)


    def test_invites_rate_limited(self) -> None:
        """Invites beyond rc_invites.per_issuer's burst are 429 M_LIMIT_EXCEEDED."""
        self.hs = make_homeserver(self, {"rc_invites": {"per_issuer": {"per_second": 0.01, "burst_count": 1}}})
        _, tok = self.hs.create_user("inviter")
        room = str(self.req("POST", "/createRoom", {"preset": "private_chat"}, tok)["room_id"])
        self.req("POST", f"/rooms/{q(room)}/invite", {"user_id": "@a:test"}, tok)
        self.req("POST", f"/rooms/{q(room)}/invite", {"user_id": "@b:test"}, tok, 429, "M_LIMIT_EXCEEDED")
