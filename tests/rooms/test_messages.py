"""GET /rooms/{roomId}/messages: pagination, tokens, filters, lazy-loaded members, access."""

from typing import Any

from tests.rooms.utils import RoomsTestCase, q


class MessagesTests(RoomsTestCase):
    def make_room(self, count: int, visibility: str = "shared") -> str:
        room = self.create_room(self.alice_tok, preset="public_chat")
        self.set_state(room, self.alice_tok, "m.room.history_visibility", {"history_visibility": visibility})
        for i in range(count):
            self.send(room, self.alice_tok, f"m{i}")
        return room

    def page_all(self, room: str, tok: str, direction: str, limit: int, **extra: Any) -> tuple[list[str], int]:
        """Page until no `end`; returns the bodies in order and the number of requests."""
        bodies: list[str] = []
        params: dict[str, Any] = {"dir": direction, "limit": limit, **extra}
        requests = 0
        while True:
            page = self.messages(room, tok, **params)
            requests += 1
            bodies.extend(self.bodies(page["chunk"]))
            self.assertLessEqual(len(page["chunk"]), limit)
            if "end" not in page:
                return bodies, requests
            self.assertEqual(page["start"], params.get("from", page["start"]))
            params["from"] = page["end"]
            self.assertLess(requests, 100)

    def test_backwards_across_many_events(self) -> None:
        """dir=b from the end walks every message newest first, tokens round-tripping, ending without `end`."""
        room = self.make_room(45)
        bodies, requests = self.page_all(room, self.alice_tok, "b", 7)
        self.assertEqual(bodies, [f"m{i}" for i in reversed(range(45))])
        self.assertGreaterEqual(requests, 7)

    def test_forwards_across_many_events(self) -> None:
        """dir=f without `from` starts at the room's beginning and walks every message oldest first."""
        room = self.make_room(30)
        bodies, _ = self.page_all(room, self.alice_tok, "f", 8)
        self.assertEqual(bodies, [f"m{i}" for i in range(30)])

    def test_backwards_then_forwards_with_same_token(self) -> None:
        """An `end` from backwards paging pages forwards again to the events after it."""
        room = self.make_room(10)
        page = self.messages(room, self.alice_tok, dir="b", limit=4)
        self.assertEqual(self.bodies(page["chunk"]), ["m9", "m8", "m7", "m6"])
        forward = self.messages(room, self.alice_tok, dir="f", limit=3, **{"from": page["end"]})
        self.assertEqual(self.bodies(forward["chunk"]), ["m6", "m7", "m8"])
        back = self.messages(room, self.alice_tok, dir="b", limit=2, **{"from": page["end"]})
        self.assertEqual(self.bodies(back["chunk"]), ["m5", "m4"])

    def test_start_echoes_from_and_end_continues(self) -> None:
        """`start` is the given `from`; without `from` it is a token that pages the same way."""
        room = self.make_room(5)
        first = self.messages(room, self.alice_tok, dir="b", limit=2)
        again = self.messages(room, self.alice_tok, dir="b", limit=2, **{"from": first["start"]})
        self.assertEqual(again["start"], first["start"])
        self.assertEqual([e["event_id"] for e in again["chunk"]], [e["event_id"] for e in first["chunk"]])

    def test_to_token_bounds_the_page(self) -> None:
        """`to` stops pagination: going back from the end to an earlier token returns only what lies between."""
        room = self.make_room(10)
        older = self.messages(room, self.alice_tok, dir="b", limit=6)  # m9..m4; end is before m4
        page = self.messages(room, self.alice_tok, dir="b", limit=50, to=older["end"])
        self.assertEqual(self.bodies(page["chunk"]), ["m9", "m8", "m7", "m6", "m5", "m4"])
        self.assertNotIn("end", page)

    def test_filter_types_and_not_senders(self) -> None:
        """A RoomEventFilter narrows the chunk and still fills the limit from older events."""
        room = self.make_room(0)
        self.join(room, self.bob_tok)
        for i in range(6):
            self.send(room, self.alice_tok, f"a{i}")
            self.send(room, self.bob_tok, f"b{i}")
        page = self.messages(room, self.alice_tok, dir="b", limit=4,
                             filter={"types": ["m.room.message"], "not_senders": [self.alice]})
        self.assertEqual(self.bodies(page["chunk"]), ["b5", "b4", "b3", "b2"])
        self.assertTrue(all(e["sender"] == self.bob for e in page["chunk"]))

    def test_lazy_load_members_state(self) -> None:
        """With lazy_load_members, `state` holds exactly the member events of the chunk's senders."""
        room = self.make_room(0)
        self.join(room, self.bob_tok)
        self.join(room, self.carol_tok)
        self.send(room, self.bob_tok, "from bob")
        page = self.messages(room, self.alice_tok, dir="b", limit=1,
                             filter={"lazy_load_members": True, "types": ["m.room.message"]})
        self.assertEqual(self.bodies(page["chunk"]), ["from bob"])
        members = [(e["type"], e["state_key"]) for e in page["state"]]
        self.assertEqual(members, [("m.room.member", self.bob)])
        plain = self.messages(room, self.alice_tok, dir="b", limit=1)
        self.assertNotIn("state", plain)

    def test_joined_visibility_hides_history_before_join(self) -> None:
        """With 'joined' history, a late joiner pages back only to their join, then gets no `end`."""
        room = self.make_room(5, visibility="joined")
        self.join(room, self.bob_tok)
        self.send(room, self.alice_tok, "after")
        bodies, _ = self.page_all(room, self.bob_tok, "b", 3)
        self.assertEqual(bodies, ["after"])
        self.assertEqual(self.page_all(room, self.alice_tok, "b", 3)[0], ["after", "m4", "m3", "m2", "m1", "m0"])

    def test_shared_visibility_shows_history_to_joiner(self) -> None:
        """With 'shared' history, a late joiner sees everything sent before they joined."""
        room = self.make_room(3, visibility="shared")
        self.join(room, self.bob_tok)
        self.assertEqual(self.page_all(room, self.bob_tok, "b", 10)[0], ["m2", "m1", "m0"])

    def test_world_readable_to_non_members(self) -> None:
        """A world_readable room can be paged by a non-member; other rooms are 403 M_FORBIDDEN."""
        open_room = self.make_room(2, visibility="world_readable")
        self.assertEqual(self.bodies(self.messages(open_room, self.carol_tok, dir="b")["chunk"]), ["m1", "m0"])
        closed = self.make_room(2, visibility="shared")
        self.messages(closed, self.carol_tok, expect=403, dir="b")

    def test_left_user_sees_up_to_leave(self) -> None:
        """A user who left pages from their leave backwards and never sees later events."""
        room = self.make_room(2)
        self.join(room, self.bob_tok)
        self.send(room, self.alice_tok, "before leave")
        self.leave(room, self.bob_tok)
        self.send(room, self.alice_tok, "after leave")
        page = self.messages(room, self.bob_tok, dir="b", limit=10)
        self.assertEqual(self.bodies(page["chunk"]), ["before leave", "m1", "m0"])
        self.assertEqual(page["chunk"][0]["type"], "m.room.member")
        forward = self.page_all(room, self.bob_tok, "f", 2)[0]
        self.assertEqual(forward, ["m0", "m1", "before leave"])

    def test_bad_parameters(self) -> None:
        """dir is required and must be b/f; malformed tokens, limits and filters are 400s."""
        room = self.make_room(1)
        self.req("GET", f"/rooms/{q(room)}/messages", tok=self.alice_tok, expect=400, errcode="M_MISSING_PARAM")
        self.messages(room, self.alice_tok, expect=400, dir="x")
        self.messages(room, self.alice_tok, expect=400, dir="b", **{"from": "nonsense"})
        self.messages(room, self.alice_tok, expect=400, dir="b", limit=-1)
        self.req("GET", f"/rooms/{q(room)}/messages?dir=b&filter=notjson", tok=self.alice_tok, expect=400)
        self.messages(room, self.alice_tok, expect=400, dir="b", filter={"limit": "x"})

    def test_unknown_room_forbidden_and_unauthenticated(self) -> None:
        """An unknown room is 403 (nothing is revealed); no token is 401."""
        self.messages("!nope:test", self.alice_tok, expect=403, dir="b")
        self.req("GET", "/rooms/%21nope%3Atest/messages?dir=b", expect=401)

    def test_stream_token_from_sync_position(self) -> None:
        """A stream token (s<pos>) starts backwards paging at that point of the room's history."""
        room = self.make_room(4)
        page = self.messages(room, self.alice_tok, dir="b", limit=1)
        stream_pos = page["chunk"][0]["event_id"]
        newest = self.hs.run(self.hs.components.core.stores.events.get_event(stream_pos))
        position = newest.internal_metadata.stream_ordering
        self.send(room, self.alice_tok, "later")
        older = self.messages(room, self.alice_tok, dir="b", limit=2, **{"from": f"s{position}"})
        self.assertEqual(self.bodies(older["chunk"]), ["m3", "m2"])

    def test_transaction_id_only_for_sending_device(self) -> None:
        """unsigned.transaction_id is shown to the sending device only."""
        room = self.make_room(0)
        self.join(room, self.bob_tok)
        self.req("PUT", f"/rooms/{q(room)}/send/m.room.message/mytxn", {"msgtype": "m.text", "body": "x"},
                 self.alice_tok)
        mine = self.messages(room, self.alice_tok, dir="b", limit=1)["chunk"][0]
        self.assertEqual(mine["unsigned"]["transaction_id"], "mytxn")
        theirs = self.messages(room, self.bob_tok, dir="b", limit=1)["chunk"][0]
        self.assertNotIn("transaction_id", theirs["unsigned"])
        accounts = self.hs.components.accounts
        self.hs.run(accounts.devices.store_device(self.alice, "OTHER", None))
        self.hs.run(accounts.tokens.add_access_token(self.alice, "OTHER", "other_device_token"))
        other = self.messages(room, "other_device_token", dir="b", limit=1)["chunk"][0]
        self.assertNotIn("transaction_id", other["unsigned"])
        self.assertIn("age", other["unsigned"])
