"""Room aliases, directory visibility and /publicRooms."""

from typing import Any

from tests.rooms.utils import RoomsTestCase, q


class AliasTests(RoomsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room = self.create_room(self.alice_tok, preset="public_chat")

    def alias_path(self, alias: str) -> str:
        return f"/directory/room/{q(alias)}"

    def test_crud(self) -> None:
        """Create, resolve (with this server listed), list on the room, delete, then 404."""
        self.req("PUT", self.alias_path("#one:test"), {"room_id": self.room}, self.alice_tok)
        got = self.req("GET", self.alias_path("#one:test"))
        self.assertEqual(got, {"room_id": self.room, "servers": ["test"]})
        self.req("PUT", self.alias_path("#two:test"), {"room_id": self.room}, self.alice_tok)
        self.assertEqual(self.req("GET", f"/rooms/{q(self.room)}/aliases", tok=self.alice_tok),
                         {"aliases": ["#one:test", "#two:test"]})
        self.req("DELETE", self.alias_path("#one:test"), tok=self.alice_tok)
        self.req("GET", self.alias_path("#one:test"), expect=404, errcode="M_NOT_FOUND")
        self.req("DELETE", self.alias_path("#one:test"), tok=self.alice_tok, expect=404, errcode="M_NOT_FOUND")

    def test_create_errors(self) -> None:
        """Taken aliases are 409; bad grammar, remote domains and bad room ids are 400; unknown rooms 404."""
        self.req("PUT", self.alias_path("#dup:test"), {"room_id": self.room}, self.alice_tok)
        self.req("PUT", self.alias_path("#dup:test"), {"room_id": self.room}, self.alice_tok, 409)
        self.req("PUT", self.alias_path("nohash:test"), {"room_id": self.room}, self.alice_tok, 400,
                 "M_INVALID_PARAM")
        self.req("PUT", self.alias_path("#nocolon"), {"room_id": self.room}, self.alice_tok, 400, "M_INVALID_PARAM")
        self.req("PUT", self.alias_path("#" + "x" * 260 + ":test"), {"room_id": self.room}, self.alice_tok, 400)
        self.req("PUT", self.alias_path("#a:remote.example"), {"room_id": self.room}, self.alice_tok, 400)
        self.req("PUT", self.alias_path("#b:test"), {}, self.alice_tok, 400, "M_MISSING_PARAM")
        self.req("PUT", self.alias_path("#b:test"), {"room_id": "nope"}, self.alice_tok, 400)
        self.req("PUT", self.alias_path("#b:test"), {"room_id": "!unknown:test"}, self.alice_tok, 404)
        self.req("GET", self.alias_path("#x:remote.example"), expect=502)  # its server is unreachable
        self.req("GET", self.alias_path("bad"), expect=400, errcode="M_INVALID_PARAM")

    def test_create_needs_membership(self) -> None:
        """Only members (or admins) may point an alias at a room."""
        self.req("PUT", self.alias_path("#bob:test"), {"room_id": self.room}, self.bob_tok, 403)
        admin_tok = self.hs.create_user("admin", admin=True)[1]
        self.req("PUT", self.alias_path("#admin:test"), {"room_id": self.room}, admin_tok)

    def test_delete_permissions(self) -> None:
        """Deleting needs the alias's creator, canonical-alias power in the room, or server admin."""
        self.join(self.room, self.bob_tok)
        self.req("PUT", self.alias_path("#bobs:test"), {"room_id": self.room}, self.bob_tok)
        self.req("PUT", self.alias_path("#alices:test"), {"room_id": self.room}, self.alice_tok)
        self.req("DELETE", self.alias_path("#alices:test"), tok=self.bob_tok, expect=403)
        self.req("DELETE", self.alias_path("#bobs:test"), tok=self.carol_tok, expect=403)
        self.req("DELETE", self.alias_path("#bobs:test"), tok=self.alice_tok)  # room creator: enough power
        self.req("PUT", self.alias_path("#bobs2:test"), {"room_id": self.room}, self.bob_tok)
        self.req("DELETE", self.alias_path("#bobs2:test"), tok=self.bob_tok)  # its creator
        admin_tok = self.hs.create_user("admin", admin=True)[1]
        self.req("DELETE", self.alias_path("#alices:test"), tok=admin_tok)

    def test_delete_updates_canonical_alias(self) -> None:
        """Deleting the canonical alias removes it from the room's m.room.canonical_alias event."""
        self.req("PUT", self.alias_path("#main:test"), {"room_id": self.room}, self.alice_tok)
        self.req("PUT", self.alias_path("#alt:test"), {"room_id": self.room}, self.alice_tok)
        self.set_state(self.room, self.alice_tok, "m.room.canonical_alias",
                       {"alias": "#main:test", "alt_aliases": ["#alt:test"]})
        self.req("DELETE", self.alias_path("#main:test"), tok=self.alice_tok)
        content = self.req("GET", f"/rooms/{q(self.room)}/state/m.room.canonical_alias", tok=self.alice_tok)
        self.assertEqual(content, {"alt_aliases": ["#alt:test"]})

    def test_room_aliases_access(self) -> None:
        """/aliases is for members; strangers get 403 unless the room is world_readable."""
        self.req("GET", f"/rooms/{q(self.room)}/aliases", tok=self.bob_tok, expect=403, errcode="M_FORBIDDEN")
        self.set_state(self.room, self.alice_tok, "m.room.history_visibility", {"history_visibility": "world_readable"})
        self.assertEqual(self.req("GET", f"/rooms/{q(self.room)}/aliases", tok=self.bob_tok), {"aliases": []})


class DirectoryVisibilityTests(RoomsTestCase):
    def test_publish_permissions(self) -> None:
        """Publishing needs canonical-alias power in the room or server admin; unknown rooms are 404."""
        room = self.create_room(self.alice_tok, preset="public_chat")
        path = f"/directory/list/room/{q(room)}"
        self.assertEqual(self.req("GET", path), {"visibility": "private"})
        self.join(room, self.bob_tok)
        self.req("PUT", path, {"visibility": "public"}, self.bob_tok, 403)
        self.req("PUT", path, {"visibility": "public"}, self.carol_tok, 403)
        self.req("PUT", path, {}, self.alice_tok)  # defaults to public
        self.assertEqual(self.req("GET", path), {"visibility": "public"})
        self.req("PUT", path, {"visibility": "hidden"}, self.alice_tok, 400, "M_INVALID_PARAM")
        admin_tok = self.hs.create_user("admin", admin=True)[1]
        self.req("PUT", path, {"visibility": "private"}, admin_tok)
        self.assertEqual(self.req("GET", path), {"visibility": "private"})
        self.req("GET", "/directory/list/room/%21unknown%3Atest", expect=404, errcode="M_NOT_FOUND")
        self.req("PUT", "/directory/list/room/%21unknown%3Atest", {}, self.alice_tok, 404)


class PublicRoomsTests(RoomsTestCase):
    def make_public(self, name: str, members: int, **extra: Any) -> str:
        room = self.create_room(self.alice_tok, preset="public_chat", visibility="public", name=name, **extra)
        for i in range(members - 1):
            tok = self.hs.create_user(f"{name.lower().replace(' ', '')}{i}")[1]
            self.join(room, tok)
        return room

    def test_listing_fields(self) -> None:
        """Entries carry the room's summary: members, name, topic, alias, avatar, join rule, flags, type."""
        room = self.make_public("Fancy", 2, topic="About", room_alias_name="fancy",
                                creation_content={"type": "m.space"})
        self.set_state(room, self.alice_tok, "m.room.avatar", {"url": "mxc://test/abc"})
        self.set_state(room, self.alice_tok, "m.room.history_visibility", {"history_visibility": "world_readable"})
        self.set_state(room, self.alice_tok, "m.room.guest_access", {"guest_access": "can_join"})
        self.create_room(self.alice_tok, name="Unlisted")
        body = self.req("GET", "/publicRooms")
        self.assertEqual(body["total_room_count_estimate"], 1)
        self.assertEqual(body["chunk"], [{
            "room_id": room, "num_joined_members": 2, "name": "Fancy", "topic": "About",
            "canonical_alias": "#fancy:test", "avatar_url": "mxc://test/abc", "join_rule": "public",
            "world_readable": True, "guest_can_join": True, "room_type": "m.space",
        }])

    def test_pagination_both_ways(self) -> None:
        """Rooms come largest first; next_batch and prev_batch walk the listing forwards and back."""
        rooms = [self.make_public(f"R{n}", n) for n in (1, 2, 3, 4, 5)]
        expected = list(reversed(rooms))
        page1 = self.req("GET", "/publicRooms?limit=2")
        self.assertEqual([r["room_id"] for r in page1["chunk"]], expected[:2])
        self.assertNotIn("prev_batch", page1)
        page2 = self.req("GET", f"/publicRooms?limit=2&since={page1['next_batch']}")
        self.assertEqual([r["room_id"] for r in page2["chunk"]], expected[2:4])
        page3 = self.req("POST", "/publicRooms", {"limit": 2, "since": page2["next_batch"]}, self.bob_tok)
        self.assertEqual([r["room_id"] for r in page3["chunk"]], expected[4:])
        self.assertNotIn("next_batch", page3)
        back = self.req("GET", f"/publicRooms?limit=2&since={page3['prev_batch']}")
        self.assertEqual([r["room_id"] for r in back["chunk"]], expected[2:4])
        first = self.req("GET", f"/publicRooms?limit=2&since={back['prev_batch']}")
        self.assertEqual([r["room_id"] for r in first["chunk"]], expected[:2])
        self.assertNotIn("prev_batch", first)
        self.assertEqual(self.req("GET", "/publicRooms")["total_room_count_estimate"], 5)

    def test_search_and_room_types(self) -> None:
        """generic_search_term matches name, topic or alias, case-insensitively; room_types filters types."""
        cats = self.make_public("Cats Club", 1)
        dogs = self.make_public("Dogs", 1, topic="all about CATS too")
        aliased = self.make_public("Other", 1, room_alias_name="catalogue")
        space = self.make_public("Space", 1, creation_content={"type": "m.space"})
        self.make_public("Birds", 1)

        def search(flt: dict[str, Any]) -> set[str]:
            return {r["room_id"] for r in self.req("POST", "/publicRooms", {"filter": flt}, self.bob_tok)["chunk"]}

        self.assertEqual(search({"generic_search_term": "cat"}), {cats, dogs, aliased})
        self.assertEqual(search({"generic_search_term": "100%"}), set())
        top = self.make_public("Top 100", 1)
        self.assertEqual(search({"generic_search_term": "1_0"}), set())  # LIKE wildcards are literal
        self.assertEqual(search({"generic_search_term": "p 100"}), {top})
        self.assertEqual(search({"room_types": ["m.space"]}), {space})
        self.assertEqual(len(search({"room_types": [None]})), 5)
        self.assertEqual(search({"room_types": [None], "generic_search_term": "SPACE"}), set())
        self.req("POST", "/publicRooms", {"filter": {"generic_search_term": 5}}, self.bob_tok, 400, "M_BAD_JSON")

    def test_redacted_name_not_searchable(self) -> None:
        """A redacted room name no longer matches a search."""
        room = self.make_public("Secret", 1)
        state = self.req("GET", f"/rooms/{q(room)}/state/m.room.name?format=event", tok=self.alice_tok)
        self.req("PUT", f"/rooms/{q(room)}/redact/{q(state['event_id'])}/r", {}, self.alice_tok)
        body = self.req("POST", "/publicRooms", {"filter": {"generic_search_term": "secret"}}, self.alice_tok)
        self.assertEqual(body["chunk"], [])

    def test_errors(self) -> None:
        """Bad tokens and limits are 400; an unreachable server's directory is 502; POST needs auth."""
        self.req("GET", "/publicRooms?since=garbage", expect=400, errcode="M_INVALID_PARAM")
        self.req("GET", "/publicRooms?limit=-1", expect=400)
        self.create_room(self.alice_tok, visibility="public")
        self.assertEqual(self.req("GET", "/publicRooms?limit=0"), {"chunk": [], "total_room_count_estimate": 1})
        self.req("POST", "/publicRooms", {"limit": "ten"}, self.bob_tok, 400, "M_BAD_JSON")
        self.req("GET", "/publicRooms?server=remote.example", expect=502)
        self.assertEqual(len(self.req("GET", "/publicRooms?server=test")["chunk"]), 1)
        self.req("POST", "/publicRooms", {}, None, 401)
        self.req("GET", "/publicRooms", tok="bad_token", expect=401)
