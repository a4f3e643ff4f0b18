"""/profile/{userId} and /profile/{userId}/{keyName}, and profile changes reaching member events."""

from __future__ import annotations

from matrixd.testing.http import FakeChannel
from tests.accounts.base import AccountsTestCase


class ProfileTests(AccountsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.user_id, self.token = self.hs.create_user("alice", "pw")
        self.bob_id, self.bob_token = self.hs.create_user("bob", "pw")

    def put(self, key: str, value: object, token: str = "", user: str = "") -> FakeChannel:
        return self.req("PUT", f"/profile/{user or self.user_id}/{key}", {key: value}, token or self.token)

    def test_get_profile(self) -> None:
        """A new user's profile has the localpart as display name; fields read one at a time too."""
        ch = self.req("GET", f"/profile/{self.user_id}")
        self.assertEqual((ch.code, ch.json_body), (200, {"displayname": "alice"}))
        self.assertEqual(self.req("GET", f"/profile/{self.user_id}/displayname").json_body,
                         {"displayname": "alice"})
        self.assert_error(self.req("GET", f"/profile/{self.user_id}/avatar_url"), 404, "M_NOT_FOUND")

    def test_unknown_remote_and_invalid_users(self) -> None:
        """Unknown local users are 404, users of unreachable servers 502; malformed ids 400."""
        self.assert_error(self.req("GET", "/profile/@nobody:test"), 404, "M_NOT_FOUND")
        self.assert_error(self.req("GET", "/profile/@nobody:test/displayname"), 404, "M_NOT_FOUND")
        self.assert_error(self.req("GET", "/profile/@someone:remote.example"), 502, "M_UNKNOWN")
        self.assert_error(self.req("GET", "/profile/not-a-user"), 400, "M_INVALID_PARAM")
        self.assert_error(self.req("PUT", "/profile/@nobody:test/displayname", {"displayname": "x"}, self.token),
                          403, "M_FORBIDDEN")

    def test_set_and_delete(self) -> None:
        """Display name and avatar can be set, cleared with empty/null, and deleted."""
        self.assertEqual(self.put("displayname", "Alice").code, 200)
        self.assertEqual(self.put("avatar_url", "mxc://test/abc").code, 200)
        self.assertEqual(self.req("GET", f"/profile/{self.user_id}").json_body,
                         {"displayname": "Alice", "avatar_url": "mxc://test/abc"})
        self.assertEqual(self.put("avatar_url", "").code, 200)
        self.assertEqual(self.req("GET", f"/profile/{self.user_id}").json_body, {"displayname": "Alice"})
        ch = self.req("DELETE", f"/profile/{self.user_id}/displayname", token=self.token)
        self.assertEqual((ch.code, ch.json_body), (200, {}))
        self.assertEqual(self.req("GET", f"/profile/{self.user_id}").json_body, {})

    def test_validation(self) -> None:
        """Wrong types, non-mxc avatars, overlong values and body/key mismatches are 400."""
        for key, value, errcode in (("displayname", 5, "M_BAD_JSON"), ("displayname", "x" * 257, "M_INVALID_PARAM"),
                                    ("avatar_url", "https://example.com/a.png", "M_INVALID_PARAM"),
                                    ("avatar_url", "mxc://" + "a" * 1000, "M_INVALID_PARAM"),
                                    ("m.tz", 3, "M_INVALID_PARAM")):
            self.assert_error(self.put(key, value), 400, errcode)
        ch = self.req("PUT", f"/profile/{self.user_id}/displayname", {"avatar_url": "mxc://a/b"}, self.token)
        self.assert_error(ch, 400, "M_MISSING_PARAM")
        self.assert_error(self.req("PUT", f"/profile/{self.user_id}/displayname", b"x", self.token), 400,
                          "M_NOT_JSON")
        self.assert_error(self.req("PUT", f"/profile/{self.user_id}/Bad_Key", {"Bad_Key": 1}, self.token), 400,
                          "M_INVALID_PARAM")
        long_key = "com." + "a" * 260
        self.assert_error(self.req("PUT", f"/profile/{self.user_id}/{long_key}", {long_key: 1}, self.token), 400,
                          "M_KEY_TOO_LARGE")
        self.assertEqual(self.req("GET", f"/profile/{self.user_id}").json_body, {"displayname": "alice"})

    def test_only_yourself(self) -> None:
        """Changing someone else's profile is 403; without a token 401."""
        self.assert_error(self.put("displayname", "Evil", token=self.bob_token), 403, "M_FORBIDDEN")
        self.assert_error(self.req("PUT", f"/profile/{self.user_id}/displayname", {"displayname": "x"}), 401,
                          "M_MISSING_TOKEN")
        self.assert_error(self.req("DELETE", f"/profile/{self.user_id}/displayname", token=self.bob_token), 403,
                          "M_FORBIDDEN")

    def test_extended_fields(self) -> None:
        """m.tz and namespaced custom keys are stored, listed, read and deleted."""
        self.assertEqual(self.put("m.tz", "Europe/Paris").code, 200)
        self.assertEqual(self.put("org.example.pets", ["cat", {"name": "Rex"}]).code, 200)
        profile = self.req("GET", f"/profile/{self.user_id}").json_body
        self.assertEqual(profile, {"displayname": "alice", "m.tz": "Europe/Paris",
                                   "org.example.pets": ["cat", {"name": "Rex"}]})
        self.assertEqual(self.req("GET", f"/profile/{self.user_id}/m.tz").json_body, {"m.tz": "Europe/Paris"})
        self.assertEqual(self.req("DELETE", f"/profile/{self.user_id}/org.example.pets", token=self.token).code, 200)
        self.assert_error(self.req("GET", f"/profile/{self.user_id}/org.example.pets"), 404, "M_NOT_FOUND")

    def test_profile_size_limit(self) -> None:
        """A change that would make the profile exceed 64 KiB is M_PROFILE_TOO_LARGE."""
        self.assertEqual(self.put("org.example.big", "x" * 40_000).code, 200)
        self.assert_error(self.put("org.example.big2", "y" * 40_000), 400, "M_PROFILE_TOO_LARGE")

    def test_propagates_to_joined_rooms(self) -> None:
        """A new display name/avatar is sent as a new join event into every joined room, keeping other keys."""
        room1 = self.create_room(self.user_id, preset="public_chat")
        room2 = self.create_room(self.bob_id, preset="public_chat")
        self.membership(self.user_id, room2, "join")
        left = self.create_room(self.bob_id, preset="public_chat")
        self.membership(self.user_id, left, "join")
        self.membership(self.user_id, left, "leave")

        self.put("displayname", "Alice W.")
        self.put("avatar_url", "mxc://test/pic")
        for room in (room1, room2):
            content = self.member_content(room, self.user_id)
            self.assertEqual(content, {"membership": "join", "displayname": "Alice W.",
                                       "avatar_url": "mxc://test/pic"})
        self.assertEqual(self.member_content(left, self.user_id)["membership"], "leave")
        self.assertNotIn("displayname", self.member_content(left, self.user_id))

        self.req("DELETE", f"/profile/{self.user_id}/avatar_url", token=self.token)
        self.assertEqual(self.member_content(room2, self.user_id),
                         {"membership": "join", "displayname": "Alice W."})
        # Bob's membership is untouched.
        self.assertEqual(self.member_content(room2, self.bob_id)["displayname"], "bob")


class ProfileChangesDisabledTests(AccountsTestCase):
    CONFIG = {"enable_set_displayname": False, "enable_set_avatar_url": False}

    def test_disabled(self) -> None:
        """enable_set_displayname/avatar_url false make those changes 403."""
        user_id, token = self.hs.create_user("alice", "pw")
        self.assert_error(self.req("PUT", f"/profile/{user_id}/displayname", {"displayname": "x"}, token), 403,
                          "M_FORBIDDEN")
        self.assert_error(self.req("PUT", f"/profile/{user_id}/avatar_url", {"avatar_url": "mxc://a/b"}, token),
                          403, "M_FORBIDDEN")
        self.assertEqual(self.req("PUT", f"/profile/{user_id}/m.tz", {"m.tz": "UTC"}, token).code, 200)
