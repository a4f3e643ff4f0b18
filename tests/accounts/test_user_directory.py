"""POST /user_directory/search: who is visible, matching, ranking, limits and freshness."""

from __future__ import annotations

from typing import Any

from matrixd.types import Requester
from tests.accounts.base import AccountsTestCase


class UserDirectoryTests(AccountsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.alice_token = self.hs.create_user("alice", "pw")
        self.bob, _ = self.hs.create_user("bob", "pw")
        self.carol, _ = self.hs.create_user("carol", "pw")
        self.dave, _ = self.hs.create_user("dave", "pw")

    def search(self, term: str, token: str = "", **extra: Any) -> Any:
        ch = self.req("POST", "/user_directory/search", {"search_term": term, **extra}, token or self.alice_token)
        self.assertEqual(ch.code, 200, ch.json_body)
        return ch.json_body

    def ids(self, term: str, **extra: Any) -> list[str]:
        return [r["user_id"] for r in self.search(term, **extra)["results"]]

    def test_visibility(self) -> None:
        """Users sharing a room or in a public room are found; others (private rooms, no rooms) are not."""
        private = self.create_room(self.alice, preset="private_chat")
        self.membership(self.alice, private, "invite", self.bob)
        self.membership(self.bob, private, "join")
        public = self.create_room(self.carol, preset="public_chat")
        other_private = self.create_room(self.dave, preset="private_chat")
        self.assertTrue(other_private)
        self.assertEqual(self.ids("bob"), [self.bob])
        self.assertEqual(self.ids("carol"), [self.carol])
        self.assertEqual(self.ids("dave"), [])
        # carol's room stops being public: she is no longer visible to alice.
        self.hs.run(self.hs.components.core.send.send_event(
            _req(self.carol), public, "m.room.join_rules", {"join_rule": "invite"}, state_key=""))
        self.assertEqual(self.ids("carol"), [])
        # Bob leaves the shared room.
        self.membership(self.bob, private, "leave")
        self.assertEqual(self.ids("bob"), [])

    def test_world_readable_room_is_public(self) -> None:
        """Members of rooms with world_readable history are visible."""
        room = self.create_room(self.dave, preset="private_chat")
        self.hs.run(self.hs.components.core.send.send_event(
            _req(self.dave), room, "m.room.history_visibility", {"history_visibility": "world_readable"},
            state_key=""))
        self.assertEqual(self.ids("dave"), [self.dave])

    def test_matching_and_display_names(self) -> None:
        """Search is case-insensitive over user id and display name; all words must match."""
        room = self.create_room(self.alice, preset="public_chat")
        for user in (self.bob, self.carol):
            self.membership(user, room, "join")
        self.req("PUT", f"/profile/{self.alice}/displayname", {"displayname": "Alice Wonderland"}, self.alice_token)
        result = self.search("WONDER")
        self.assertEqual(result["results"], [{"user_id": self.alice, "display_name": "Alice Wonderland"}])
        self.assertEqual(self.ids("alice wonder"), [self.alice])
        self.assertEqual(self.ids("alice bob"), [])
        self.assertEqual(self.ids("test"), sorted([self.alice, self.bob, self.carol]))
        self.assertEqual(self.ids("%"), [])
        self.assertEqual(self.ids("_"), [])
        self.assertEqual(self.search("   "), {"results": [], "limited": False})

    def test_profile_changes_reflected(self) -> None:
        """A changed display name and avatar show in results; the old name no longer matches."""
        room = self.create_room(self.alice, preset="public_chat")
        self.membership(self.bob, room, "join")
        bob_login = self.login("bob").json_body["access_token"]
        self.req("PUT", f"/profile/{self.bob}/displayname", {"displayname": "Roberto"}, bob_login)
        self.req("PUT", f"/profile/{self.bob}/avatar_url", {"avatar_url": "mxc://test/bob"}, bob_login)
        results = self.search("robert")["results"]
        self.assertEqual(results, [{"user_id": self.bob, "display_name": "Roberto", "avatar_url": "mxc://test/bob"}])
        self.assertEqual(self.ids("bob"), [self.bob])  # still found by user id
        self.assertEqual(self.ids("bob roberto"), [self.bob])

    def test_limit_and_ranking(self) -> None:
        """limit caps results and sets limited; prefix matches rank first."""
        room = self.create_room(self.alice, preset="public_chat")
        users = [self.hs.create_user(f"user{i}", "pw")[0] for i in range(5)]
        for u in users:
            self.membership(u, room, "join")
        result = self.search("user", limit=3)
        self.assertEqual(len(result["results"]), 3)
        self.assertTrue(result["limited"])
        self.assertFalse(self.search("user", limit=5)["limited"])
        self.assertEqual(self.search("user", limit=0), {"results": [], "limited": True})
        self.req("PUT", f"/profile/{self.alice}/displayname", {"displayname": "Zed superuser"}, self.alice_token)
        ids = self.ids("user", limit=10)
        self.assertEqual(ids[-1], self.alice)  # "user" starts no word of alice's

    def test_deactivated_users_disappear(self) -> None:
        """Deactivated users are not found."""
        room = self.create_room(self.alice, preset="public_chat")
        self.membership(self.bob, room, "join")
        self.assertEqual(self.ids("bob"), [self.bob])
        self.hs.run(self.hs.components.account_area.account.deactivate_user(self.bob))
        self.assertEqual(self.ids("bob"), [])

    def test_background_catch_up(self) -> None:
        """Shortly after state changes the directory catches up without a search."""
        room = self.create_room(self.alice, preset="public_chat")
        self.membership(self.bob, room, "join")
        store = self.hs.components.account_area.user_directory_store
        self.assertIsNone(self.hs.run(store.get_entry(self.bob)))
        self.hs.advance(3)
        entry = self.hs.run(store.get_entry(self.bob))
        self.assertEqual((entry.user_id, entry.display_name), (self.bob, "bob"))

    def test_bad_requests(self) -> None:
        """search_term is required and must be a string; limit an integer >= 0; a token is needed."""
        self.assert_error(self.req("POST", "/user_directory/search", {}, self.alice_token), 400, "M_MISSING_PARAM")
        self.assert_error(self.req("POST", "/user_directory/search", {"search_term": 1}, self.alice_token), 400,
                          "M_BAD_JSON")
        self.assert_error(self.req("POST", "/user_directory/search", {"search_term": "a", "limit": "5"},
                                   self.alice_token), 400, "M_BAD_JSON")
        self.assert_error(self.req("POST", "/user_directory/search", {"search_term": "a", "limit": -1},
                                   self.alice_token), 400, "M_INVALID_PARAM")
        self.assert_error(self.req("POST", "/user_directory/search", b"{", self.alice_token), 400, "M_NOT_JSON")
        self.assert_error(self.req("POST", "/user_directory/search", {"search_term": "a"}), 401, "M_MISSING_TOKEN")


class SearchAllUsersTests(AccountsTestCase):
    CONFIG = {"user_directory": {"search_all_users": True}}

    def test_search_all_users(self) -> None:
        """With search_all_users every registered local user is found, rooms or not."""
        _, token = self.hs.create_user("alice", "pw")
        body = self.register("zoe")
        ch = self.req("POST", "/user_directory/search", {"search_term": "zoe"}, token)
        self.assertEqual(ch.json_body["results"], [{"user_id": body["user_id"], "display_name": "zoe"}])


def _req(user_id: str) -> Requester:
    return Requester(user_id=user_id, device_id=None, access_token_id=None)
