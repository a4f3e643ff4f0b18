"""Admin room endpoints: listing, details, members, state, block, make_room_admin."""

from __future__ import annotations

from tests.admin.base import ADMIN, V3, AdminTestCase


class RoomReadTests(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room_a = self.create_room(self.user_tok, name="Alpha", preset="public_chat", visibility="public")
        self.room_b = self.create_room(self.admin_tok, name="Beta")
        self.assertEqual(self.join(self.admin_tok, self.room_a).code, 200)

    def test_list_sorted_and_searched(self) -> None:
        """The room list sorts by name or joined members, searches names, and pages."""
        body = self.admin("GET", "/v1/rooms?order_by=name")
        self.assertEqual([r["name"] for r in body["rooms"]], ["Alpha", "Beta"])
        self.assertEqual(body["total_rooms"], 2)
        first = body["rooms"][0]
        self.assertEqual((first["joined_members"], first["joined_local_members"], first["creator"]),
                         (2, 2, self.user_id))
        self.assertEqual(first["join_rules"], "public")
        self.assertGreater(first["state_events"], 3)
        body = self.admin("GET", "/v1/rooms?order_by=joined_members")
        self.assertEqual(body["rooms"][0]["room_id"], self.room_a)
        self.assertEqual([r["room_id"] for r in self.admin("GET", "/v1/rooms?search_term=bet")["rooms"]],
                         [self.room_b])
        page = self.admin("GET", "/v1/rooms?limit=1")
        self.assertEqual((len(page["rooms"]), page["next_batch"]), (1, 1))
        self.admin("GET", "/v1/rooms?order_by=bogus", code=400)

    def test_details_members_state(self) -> None:
        """Room details, members and state describe the room; an unknown room is 404."""
        details = self.admin("GET", f"/v1/rooms/{self.room_a}")
        self.assertEqual((details["name"], details["public"]), ("Alpha", True))
        members = self.admin("GET", f"/v1/rooms/{self.room_a}/members")
        self.assertEqual((sorted(members["members"]), members["total"]), (sorted([self.user_id, self.admin_id]), 2))
        state = self.admin("GET", f"/v1/rooms/{self.room_a}/state")["state"]
        self.assertIn("m.room.create", [e["type"] for e in state])
        self.admin("GET", "/v1/rooms/!nope:test", code=404)
        self.admin("GET", "/v1/rooms/!nope:test/members", code=404)

    def test_block(self) -> None:
        """PUT block records the block (and who set it); false removes it."""
        self.assertEqual(self.admin("GET", f"/v1/rooms/{self.room_b}/block"), {"block": False})
        self.assertEqual(self.admin("PUT", f"/v1/rooms/{self.room_b}/block", {"block": True}), {"block": True})
        self.assertEqual(self.admin("GET", f"/v1/rooms/{self.room_b}/block"),
                         {"block": True, "user_id": self.admin_id})
        self.admin("PUT", f"/v1/rooms/{self.room_b}/block", {"block": False})
        self.assertEqual(self.admin("GET", f"/v1/rooms/{self.room_b}/block"), {"block": False})
        self.admin("PUT", f"/v1/rooms/{self.room_b}/block", {"block": "yes"}, code=400)

    def test_make_room_admin(self) -> None:
        """make_room_admin joins a user to a room they are not in and gives them the top power level."""
        carol, carol_tok = self.hs.create_user("carol")
        self.admin("POST", f"/v1/rooms/{self.room_a}/make_room_admin", {"user_id": carol})
        self.assertIn(carol, self.admin("GET", f"/v1/rooms/{self.room_a}/members")["members"])
        ch = self.req("GET", f"{V3}/rooms/{self.room_a}/state/m.room.power_levels/", None, carol_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body["users"][carol], 100)
        ch = self.req("PUT", f"{V3}/rooms/{self.room_a}/state/m.room.topic/", {"topic": "mine"}, carol_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.admin("POST", f"/v1/rooms/{self.room_a}/make_room_admin", {"user_id": "@x:remote"}, code=400)
        self.assertEqual(self.req("POST", f"{ADMIN}/v1/rooms/!nope:test/make_room_admin", {},
                                  self.admin_tok).code, 404)
