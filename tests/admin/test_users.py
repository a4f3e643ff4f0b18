"""Admin user endpoints: list, create/modify, deactivate, passwords, flags, devices, rooms, puppets."""

from __future__ import annotations

from tests.admin.base import ADMIN, V3, AdminTestCase


class UserListTests(AdminTestCase):
    def test_list_filters_and_pages(self) -> None:
        """The list pages with from/limit/next_token, filters by name, and hides deactivated users by default."""
        for name in ("carol", "dave", "erin"):
            self.hs.create_user(name)
        body = self.admin("GET", "/v2/users?limit=2")
        self.assertEqual(body["total"], 5)
        self.assertEqual([u["name"] for u in body["users"]], ["@admin:test", "@bob:test"])
        self.assertEqual(body["next_token"], "2")
        body = self.admin("GET", "/v2/users?from=4&limit=2")
        self.assertEqual([u["name"] for u in body["users"]], ["@erin:test"])
        self.assertNotIn("next_token", body)
        self.assertEqual([u["name"] for u in self.admin("GET", "/v2/users?name=car")["users"]], ["@carol:test"])
        self.assertEqual([u["name"] for u in self.admin("GET", "/v2/users?user_id=@dav")["users"]], ["@dave:test"])
        self.admin("POST", "/v1/deactivate/@dave:test", {})
        self.assertEqual(self.admin("GET", "/v2/users")["total"], 4)
        self.assertEqual(self.admin("GET", "/v2/users?deactivated=true")["total"], 5)
        names = [u["name"] for u in self.admin("GET", "/v2/users?order_by=name&dir=b")["users"]]
        self.assertEqual(names, sorted(names, reverse=True))
        self.assertTrue(self.admin("GET", "/v2/users")["users"][0]["admin"])

    def test_bad_parameters(self) -> None:
        """A bad order_by, dir or from is a 400 naming the parameter."""
        for query in ("order_by=nope", "dir=x", "from=-1", "from=abc", "limit=-3"):
            ch = self.req("GET", f"{ADMIN}/v2/users?{query}", None, self.admin_tok)
            self.assertEqual(ch.code, 400, query)


class UserModifyTests(AdminTestCase):
    def test_create_then_modify(self) -> None:
        """PUT creates a user (201) who can log in, then modifies it (200): admin, displayname, user_type."""
        ch = self.req("PUT", f"{ADMIN}/v2/users/@new:test", {"password": "s3cret-pw", "displayname": "Newbie"},
                      self.admin_tok)
        self.assertEqual(ch.code, 201, ch.json_body)
        self.assertEqual(ch.json_body["displayname"], "Newbie")
        login = self.req("POST", f"{V3}/login", {"type": "m.login.password", "identifier": {
            "type": "m.id.user", "user": "new"}, "password": "s3cret-pw"})
        self.assertEqual(login.code, 200, login.json_body)
        body = self.admin("PUT", "/v2/users/@new:test", {"admin": True, "displayname": "Renamed",
                                                         "user_type": "bot"})
        self.assertEqual((body["admin"], body["displayname"], body["user_type"]), (True, "Renamed", "bot"))
        self.assertTrue(self.admin("GET", "/v1/users/@new:test/admin")["admin"])

    def test_password_change_logs_out(self) -> None:
        """Setting a password through PUT logs the user's devices out unless logout_devices is false."""
        self.admin("PUT", "/v2/users/@bob:test", {"password": "another-pw", "logout_devices": False})
        self.assertEqual(self.req("GET", f"{V3}/account/whoami", None, self.user_tok).code, 200)
        self.admin("PUT", "/v2/users/@bob:test", {"password": "third-pw"})
        self.assertEqual(self.req("GET", f"{V3}/account/whoami", None, self.user_tok).code, 401)

    def test_invalid_bodies(self) -> None:
        """Bad field types, an unknown user_type and a remote user are 400s that change nothing."""
        for body in ({"admin": "yes"}, {"user_type": "robot"}, {"displayname": 5}, {"deactivated": 1}):
            ch = self.req("PUT", f"{ADMIN}/v2/users/@bob:test", body, self.admin_tok)
            self.assertEqual(ch.code, 400, body)
        ch = self.req("PUT", f"{ADMIN}/v2/users/@x:elsewhere", {}, self.admin_tok)
        self.assertEqual(ch.code, 400)
        self.assertFalse(self.admin("GET", "/v2/users/@bob:test")["admin"])

    def test_deactivate_and_reactivate(self) -> None:
        """PUT deactivated=true deactivates (tokens die); reactivating needs a password."""
        self.admin("PUT", "/v2/users/@bob:test", {"deactivated": True})
        self.assertEqual(self.req("GET", f"{V3}/account/whoami", None, self.user_tok).code, 401)
        self.admin("PUT", "/v2/users/@bob:test", {"deactivated": False}, code=400)
        body = self.admin("PUT", "/v2/users/@bob:test", {"deactivated": False, "password": "back-again"})
        self.assertFalse(body["deactivated"])

    def test_admin_cannot_demote_or_deactivate_self(self) -> None:
        """An admin cannot remove their own admin flag or deactivate themselves."""
        self.admin("PUT", "/v1/users/@admin:test/admin", {"admin": False}, code=400)
        self.admin("POST", "/v1/deactivate/@admin:test", {}, code=400)
        self.assertTrue(self.admin("GET", "/v1/users/@admin:test/admin")["admin"])


class UserActionTests(AdminTestCase):
    def test_deactivate_with_erase(self) -> None:
        """POST deactivate with erase marks the user erased and deactivated, and leaves their rooms."""
        room = self.create_room(self.user_tok)
        body = self.admin("POST", "/v1/deactivate/@bob:test", {"erase": True})
        self.assertEqual(body, {"id_server_unbind_result": "success"})
        user = self.admin("GET", "/v2/users/@bob:test")
        self.assertEqual((user["deactivated"], user["erased"]), (True, True))
        self.assertNotIn("@bob:test", self.admin("GET", f"/v1/rooms/{room}/members")["members"])
        self.admin("POST", "/v1/deactivate/@nobody:test", {}, code=404)

    def test_reset_password(self) -> None:
        """reset_password sets a new password; logout_devices false keeps the sessions."""
        self.admin("POST", "/v1/reset_password/@bob:test", {"new_password": "fresh-pw", "logout_devices": False})
        self.assertEqual(self.req("GET", f"{V3}/account/whoami", None, self.user_tok).code, 200)
        login = self.req("POST", f"{V3}/login", {"type": "m.login.password", "identifier": {
            "type": "m.id.user", "user": "bob"}, "password": "fresh-pw"})
        self.assertEqual(login.code, 200)
        self.admin("POST", "/v1/reset_password/@bob:test", {}, code=400)

    def test_whois_devices_joined_rooms(self) -> None:
        """whois, devices and joined_rooms describe the user's sessions and rooms."""
        room = self.create_room(self.user_tok)
        whois = self.admin("GET", "/v1/whois/@bob:test")
        self.assertEqual(whois["user_id"], "@bob:test")
        self.assertIn("sessions", whois["devices"][""])
        devices = self.admin("GET", "/v2/users/@bob:test/devices")
        self.assertEqual((devices["total"], devices["devices"][0]["device_id"]), (1, "TESTDEVICE"))
        self.assertEqual(self.admin("GET", "/v1/users/@bob:test/joined_rooms"), {"joined_rooms": [room], "total": 1})

    def test_admin_flag(self) -> None:
        """PUT users/<id>/admin promotes and demotes; a non-boolean is a 400."""
        self.admin("PUT", "/v1/users/@bob:test/admin", {"admin": True})
        self.assertTrue(self.admin("GET", "/v1/users/@bob:test/admin")["admin"])
        self.assertEqual(self.req("GET", f"{ADMIN}/v2/users", None, self.user_tok).code, 200)
        self.admin("PUT", "/v1/users/@bob:test/admin", {"admin": False})
        self.assertEqual(self.req("GET", f"{ADMIN}/v2/users", None, self.user_tok).code, 403)
        self.admin("PUT", "/v1/users/@bob:test/admin", {"admin": "no"}, code=400)

    def test_shadow_ban(self) -> None:
        """shadow_ban sets and clears the user's shadow-banned flag."""
        self.admin("POST", "/v1/users/@bob:test/shadow_ban", {})
        self.assertTrue(self.admin("GET", "/v2/users/@bob:test")["shadow_banned"])
        self.admin("DELETE", "/v1/users/@bob:test/shadow_ban")
        self.assertFalse(self.admin("GET", "/v2/users/@bob:test")["shadow_banned"])

    def test_ratelimit_override(self) -> None:
        """override_ratelimit stores, reads back and deletes per-user values; negatives are 400."""
        self.assertEqual(self.admin("GET", "/v1/users/@bob:test/override_ratelimit"), {})
        body = self.admin("POST", "/v1/users/@bob:test/override_ratelimit", {"messages_per_second": 5})
        self.assertEqual(body, {"messages_per_second": 5, "burst_count": 0})
        self.assertEqual(self.admin("GET", "/v1/users/@bob:test/override_ratelimit"), body)
        self.admin("POST", "/v1/users/@bob:test/override_ratelimit", {"burst_count": -1}, code=400)
        self.admin("DELETE", "/v1/users/@bob:test/override_ratelimit")
        self.assertEqual(self.admin("GET", "/v1/users/@bob:test/override_ratelimit"), {})

    def test_login_as_user(self) -> None:
        """login returns a puppet token that acts as the user; not for oneself or in the past."""
        token = self.admin("POST", "/v1/users/@bob:test/login", {})["access_token"]
        ch = self.req("GET", f"{V3}/account/whoami", None, token)
        self.assertEqual((ch.code, ch.json_body["user_id"]), (200, "@bob:test"))
        self.admin("POST", "/v1/users/@admin:test/login", {}, code=400)
        self.admin("POST", "/v1/users/@bob:test/login", {"valid_until_ms": 5}, code=400)

    def test_user_media(self) -> None:
        """users/<id>/media lists the user's uploads with their quarantine state."""
        ch = self.req("POST", "/_matrix/media/v3/upload?filename=a.txt", b"hello", self.user_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        media_id = ch.json_body["content_uri"].rsplit("/", 1)[1]
        self.admin("POST", f"/v1/media/quarantine/test/{media_id}", {})
        body = self.admin("GET", "/v1/users/@bob:test/media")
        self.assertEqual(body["total"], 1)
        self.assertEqual((body["media"][0]["media_id"], body["media"][0]["quarantined_by"]),
                         (media_id, "@admin:test"))
