"""/context, /event, /members and /joined_members."""

from tests.rooms.utils import RoomsTestCase, q


class ContextTests(RoomsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room = self.create_room(self.alice_tok, preset="public_chat")
        self.join(self.room, self.bob_tok)
        self.ids = [self.send(self.room, self.alice_tok if i % 2 else self.bob_tok, f"m{i}") for i in range(10)]

    def context(self, event_id: str, tok: str, query: str = "", expect: int = 200) -> dict:  # type: ignore[type-arg]
        return self.req("GET", f"/rooms/{q(self.room)}/context/{q(event_id)}{query}", tok=tok, expect=expect)

    def test_context_around_event(self) -> None:
        """limit splits between events_before (newest first) and events_after (oldest first)."""
        ctx = self.context(self.ids[5], self.alice_tok, "?limit=4")
        self.assertEqual(ctx["event"]["content"]["body"], "m5")
        self.assertEqual(self.bodies(ctx["events_before"]), ["m4", "m3"])
        self.assertEqual(self.bodies(ctx["events_after"]), ["m6", "m7"])

    def test_tokens_continue_with_messages(self) -> None:
        """`start` pages backwards from the oldest context event, `end` forwards from the newest."""
        ctx = self.context(self.ids[5], self.alice_tok, "?limit=2")
        back = self.messages(self.room, self.alice_tok, dir="b", limit=2, **{"from": ctx["start"]})
        self.assertEqual(self.bodies(back["chunk"]), ["m3", "m2"])
        forward = self.messages(self.room, self.alice_tok, dir="f", limit=2, **{"from": ctx["end"]})
        self.assertEqual(self.bodies(forward["chunk"]), ["m7", "m8"])

    def test_state_and_lazy_loading(self) -> None:
        """`state` is the room state after the last returned event; lazy loading keeps only shown senders."""
        ctx = self.context(self.ids[9], self.alice_tok, "?limit=0")
        keys = {(e["type"], e["state_key"]) for e in ctx["state"]}
        self.assertIn(("m.room.create", ""), keys)
        self.assertIn(("m.room.member", self.alice), keys)
        self.assertIn(("m.room.member", self.bob), keys)
        self.assertEqual((ctx["events_before"], ctx["events_after"]), ([], []))
        lazy = self.context(self.ids[9], self.alice_tok, '?limit=0&filter={"lazy_load_members":true}')
        members = [e["state_key"] for e in lazy["state"] if e["type"] == "m.room.member"]
        self.assertEqual(members, [self.alice])  # m9 was sent by alice

    def test_filter_applies_to_neighbours_not_event(self) -> None:
        """The filter narrows events_before/after but the requested event is always returned."""
        flt = '{"senders":["%s"]}' % self.bob
        ctx = self.context(self.ids[5], self.alice_tok, f"?limit=4&filter={q(flt)}")
        self.assertEqual(ctx["event"]["sender"], self.alice)
        self.assertEqual(self.bodies(ctx["events_before"]), ["m4", "m2"])
        self.assertEqual(self.bodies(ctx["events_after"]), ["m6", "m8"])

    def test_not_found_and_forbidden(self) -> None:
        """Unknown events are 404; non-members of a shared room 403; events hidden by visibility 404."""
        self.context("$unknown", self.alice_tok, expect=404)
        self.context(self.ids[0], self.carol_tok, expect=403)
        other = self.create_room(self.alice_tok)
        self.req("GET", f"/rooms/{q(other)}/context/{q(self.ids[0])}", tok=self.alice_tok, expect=404)
        private = self.create_room(self.alice_tok, preset="public_chat")
        self.set_state(private, self.alice_tok, "m.room.history_visibility", {"history_visibility": "joined"})
        hidden = self.send(private, self.alice_tok, "before carol")
        self.join(private, self.carol_tok)
        self.req("GET", f"/rooms/{q(private)}/context/{q(hidden)}", tok=self.carol_tok, expect=404)
        self.req("GET", f"/rooms/{q(private)}/event/{q(hidden)}", tok=self.carol_tok, expect=404)
        # History visibility applies as it was when each event was sent: 'shared' m0 stays visible.
        self.set_state(self.room, self.alice_tok, "m.room.history_visibility", {"history_visibility": "joined"})
        self.join(self.room, self.carol_tok)
        self.context(self.ids[0], self.carol_tok)

    def test_left_user_context_stops_at_leave(self) -> None:
        """A departed user's events_after end at their leave."""
        self.leave(self.room, self.bob_tok)
        self.send(self.room, self.alice_tok, "later")
        ctx = self.context(self.ids[9], self.bob_tok, "?limit=10")
        self.assertEqual(self.bodies(ctx["events_after"]), [])
        self.assertEqual([e["type"] for e in ctx["events_after"]], ["m.room.member"])

    def test_get_event(self) -> None:
        """GET /event returns the client event with room_id and age; wrong room or unknown id is 404."""
        ev = self.req("GET", f"/rooms/{q(self.room)}/event/{q(self.ids[3])}", tok=self.alice_tok)
        self.assertEqual((ev["event_id"], ev["room_id"], ev["type"]), (self.ids[3], self.room, "m.room.message"))
        self.assertIn("age", ev["unsigned"])
        self.req("GET", f"/rooms/{q(self.room)}/event/%24nope", tok=self.alice_tok, expect=404, errcode="M_NOT_FOUND")


class MembersTests(RoomsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room = self.create_room(self.alice_tok, preset="public_chat")

    def members(self, tok: str, query: str = "", expect: int = 200) -> list[tuple[str, str]]:
        body = self.req("GET", f"/rooms/{q(self.room)}/members{query}", tok=tok, expect=expect)
        if expect != 200:
            return []
        return sorted((e["state_key"], e["content"]["membership"]) for e in body["chunk"])

    def test_members_and_filters(self) -> None:
        """membership / not_membership filter the member events (both given: either may hold)."""
        self.join(self.room, self.bob_tok)
        self.invite(self.room, self.alice_tok, self.carol)
        everyone = [(self.alice, "join"), (self.bob, "join"), (self.carol, "invite")]
        self.assertEqual(self.members(self.alice_tok), everyone)
        self.assertEqual(self.members(self.alice_tok, "?membership=invite"), [(self.carol, "invite")])
        self.assertEqual(self.members(self.alice_tok, "?not_membership=join"), [(self.carol, "invite")])
        self.assertEqual(self.members(self.alice_tok, "?membership=invite&not_membership=invite"),
                         [(self.alice, "join"), (self.bob, "join"), (self.carol, "invite")])
        self.members(self.alice_tok, "?membership=dancing", expect=400)

    def test_members_at_token(self) -> None:
        """`at` returns the members as they were at that point of the timeline."""
        self.join(self.room, self.bob_tok)
        page = self.messages(self.room, self.alice_tok, dir="b", limit=1)
        token = page["start"]
        self.join(self.room, self.carol_tok)
        self.assertEqual(self.members(self.alice_tok, f"?at={q(token)}"), [(self.alice, "join"), (self.bob, "join")])
        self.assertEqual(len(self.members(self.alice_tok)), 3)

    def test_left_and_non_members(self) -> None:
        """A departed user sees the members when they left; a stranger gets 403."""
        self.join(self.room, self.bob_tok)
        self.leave(self.room, self.bob_tok)
        self.join(self.room, self.carol_tok)
        self.assertEqual(self.members(self.bob_tok), [(self.alice, "join"), (self.bob, "leave")])
        stranger = self.hs.create_user("dave")[1]
        self.members(stranger, expect=403)

    def test_joined_members_requires_membership(self) -> None:
        """/joined_members lists joined users with profiles, and only for joined users."""
        self.join(self.room, self.bob_tok)
        joined = self.req("GET", f"/rooms/{q(self.room)}/joined_members", tok=self.bob_tok)["joined"]
        self.assertEqual(set(joined), {self.alice, self.bob})
        self.req("GET", f"/rooms/{q(self.room)}/joined_members", tok=self.carol_tok, expect=403)
        self.leave(self.room, self.bob_tok)
        self.req("GET", f"/rooms/{q(self.room)}/joined_members", tok=self.bob_tok, expect=403)
