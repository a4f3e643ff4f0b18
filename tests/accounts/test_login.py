"""/login (password, token), /login/get_token, /refresh, /logout and /logout/all."""

from __future__ import annotations

from typing import Any

from tests.accounts.base import AccountsTestCase


class LoginTests(AccountsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.user_id, self.token = self.hs.create_user("alice", "pw")

    def test_flows(self) -> None:
        """GET /login offers password and token logins (get_token off by default)."""
        ch = self.req("GET", "/login")
        self.assertEqual(ch.json_body, {"flows": [{"type": "m.login.password"}, {"type": "m.login.token"}]})

    def test_password_login(self) -> None:
        """Localpart, full user id, other case and the legacy 'user' field all log in."""
        for ident in ("alice", "@alice:test", "ALICE", "@Alice:test"):
            ch = self.login(ident, "pw")
            self.assertEqual(ch.code, 200, (ident, ch.json_body))
            self.assertEqual(ch.json_body["user_id"], "@alice:test")
            self.assertEqual(self.whoami(ch.json_body["access_token"]).json_body["device_id"],
                             ch.json_body["device_id"])
        ch = self.req("POST", "/login", {"type": "m.login.password", "user": "alice", "password": "pw"})
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertNotIn("refresh_token", ch.json_body)
        self.assertNotIn("expires_in_ms", ch.json_body)

    def test_case_insensitive_only_when_unambiguous(self) -> None:
        """A case-insensitive match is used only if exactly one user matches."""
        self.hs.create_user("Bob", "pw1", device_id="D1")
        self.hs.create_user("BOB", "pw2", device_id="D2")
        self.assert_error(self.login("bob", "pw1"), 403, "M_FORBIDDEN")
        self.assertEqual(self.login("Bob", "pw1").json_body["user_id"], "@Bob:test")

    def test_wrong_credentials(self) -> None:
        """Wrong passwords, unknown users and remote users get the same 403."""
        for ident, pw in (("alice", "nope"), ("nobody", "pw"), ("@alice:elsewhere", "pw")):
            ch = self.login(ident, pw)
            self.assert_error(ch, 403, "M_FORBIDDEN")
            self.assertEqual(ch.json_body["error"], "Invalid username or password")

    def test_bad_requests(self) -> None:
        """Malformed login bodies are 400s, third-party ids 403."""
        self.assert_error(self.req("POST", "/login", b"{"), 400, "M_NOT_JSON")
        self.assert_error(self.req("POST", "/login", {"identifier": {}}), 400, "M_MISSING_PARAM")
        self.assert_error(self.req("POST", "/login", {"type": "m.login.bogus"}), 400, "M_UNKNOWN")
        self.assert_error(self.req("POST", "/login", {"type": "m.login.password", "password": "pw"}), 400,
                          "M_MISSING_PARAM")
        self.assert_error(self.req("POST", "/login", {"type": "m.login.password", "user": "alice"}), 400,
                          "M_MISSING_PARAM")
        self.assert_error(self.req("POST", "/login", {"type": "m.login.password", "password": "pw",
                                                      "identifier": {"type": "m.id.weird"}}), 400, "M_UNKNOWN")
        self.assert_error(self.req("POST", "/login", {"type": "m.login.password", "password": "pw", "identifier": {
            "type": "m.id.thirdparty", "medium": "email", "address": "a@b.c"}}), 403, "M_FORBIDDEN")
        self.assert_error(self.login("alice", "pw", device_id=7), 400, "M_BAD_JSON")
        self.assert_error(self.req("POST", "/login", {"type": "m.login.token"}), 400, "M_MISSING_PARAM")

    def test_deactivated_user(self) -> None:
        """A deactivated user cannot log in."""
        self.hs.run(self.hs.components.account_area.account.deactivate_user(self.user_id))
        self.assertEqual(self.login("alice", "pw").code, 403)

    def test_device_reuse(self) -> None:
        """Logging in with an existing device id replaces that device's token and keeps its name."""
        first = self.login("alice", "pw", device_id="LAPTOP", initial_device_display_name="Laptop").json_body
        self.assertEqual(first["device_id"], "LAPTOP")
        second = self.login("alice", "pw", device_id="LAPTOP", initial_device_display_name="Ignored").json_body
        self.assertEqual(second["device_id"], "LAPTOP")
        self.assert_error(self.whoami(first["access_token"]), 401, "M_UNKNOWN_TOKEN")
        self.assertEqual(self.whoami(second["access_token"]).code, 200)
        ch = self.req("GET", "/devices/LAPTOP", token=second["access_token"])
        self.assertEqual(ch.json_body["display_name"], "Laptop")
        devices = self.req("GET", "/devices", token=second["access_token"]).json_body["devices"]
        self.assertEqual(sorted(d["device_id"] for d in devices), ["LAPTOP", "TESTDEVICE"])

    def test_tokens_are_random_and_hashed(self) -> None:
        """Two logins get different tokens; the database holds neither."""
        a = self.login("alice").json_body["access_token"]
        b = self.login("alice").json_body["access_token"]
        self.assertNotEqual(a, b)
        rows = self.hs.run(self.hs.components.db.execute("t", "SELECT token_hash FROM access_tokens"))
        self.assertFalse({a, b} & {r[0] for r in rows})


class LoginRateLimitTests(AccountsTestCase):
    CONFIG = {"rc_login": {
        "address": {"per_second": 0.1, "burst_count": 4},
        "account": {"per_second": 0.1, "burst_count": 2},
        "failed_attempts": {"per_second": 0.1, "burst_count": 2},
    }}

    def setUp(self) -> None:
        super().setUp()
        self.hs.create_user("alice", "pw")

    def test_failed_attempts(self) -> None:
        """After too many wrong passwords even the right one is 429 until the bucket refills."""
        self.assertEqual(self.login("alice", "x").code, 403)
        self.assertEqual(self.login("alice", "x").code, 403)
        ch = self.login("alice", "pw")
        self.assert_error(ch, 429, "M_LIMIT_EXCEEDED")
        self.hs.advance(11)
        self.assertEqual(self.login("alice", "pw").code, 200)

    def test_account_limit(self) -> None:
        """Successful logins of one account are limited by rc_login.account."""
        self.assertEqual(self.login("alice").code, 200)
        self.assertEqual(self.login("Alice").code, 200)
        self.assert_error(self.login("alice"), 429, "M_LIMIT_EXCEEDED")

    def test_address_limit(self) -> None:
        """Every login attempt from one address counts against rc_login.address."""
        for _ in range(4):
            self.login("nobody", "x")
        ch = self.login("alice")
        self.assert_error(ch, 429, "M_LIMIT_EXCEEDED")
        self.assertTrue(ch.headers.getRawHeaders(b"Retry-After"))


class LoginTokenTests(AccountsTestCase):
    CONFIG = {"login_via_existing_session": {"enabled": True, "token_timeout": "2m"}}

    def setUp(self) -> None:
        super().setUp()
        self.user_id, self.token = self.hs.create_user("alice", "pw")

    def get_token(self) -> str:
        ch = self.with_password_uia("POST", "/_matrix/client/v1/login/get_token", {}, self.token, "alice")
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body["expires_in_ms"], 120_000)
        token: str = ch.json_body["login_token"]
        return token

    def test_flow_advertised(self) -> None:
        """GET /login says get_login_token when enabled."""
        flows = self.req("GET", "/login").json_body["flows"]
        self.assertIn({"type": "m.login.token", "get_login_token": True}, flows)

    def test_token_login_single_use(self) -> None:
        """A login token logs in once; the second use is 403."""
        login_token = self.get_token()
        ch = self.req("POST", "/login", {"type": "m.login.token", "token": login_token})
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body["user_id"], self.user_id)
        ch = self.req("POST", "/login", {"type": "m.login.token", "token": login_token})
        self.assert_error(ch, 403, "M_FORBIDDEN")

    def test_token_expires(self) -> None:
        """A login token is refused after its lifetime."""
        login_token = self.get_token()
        self.hs.advance(121)
        self.assert_error(self.req("POST", "/login", {"type": "m.login.token", "token": login_token}), 403,
                          "M_FORBIDDEN")

    def test_get_token_requires_uia_every_time(self) -> None:
        """get_token always asks for the password; a wrong one is a 401 with errcode; it is rate limited."""
        ch = self.req("POST", "/_matrix/client/v1/login/get_token", {}, self.token)
        self.assertEqual(ch.code, 401)
        ch = self.req("POST", "/_matrix/client/v1/login/get_token", {"auth": {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "bad",
            "session": ch.json_body["session"]}}, self.token)
        self.assert_error(ch, 401, "M_FORBIDDEN")
        self.assertIn("flows", ch.json_body)
        self.get_token()
        ch = self.with_password_uia("POST", "/_matrix/client/v1/login/get_token", {}, self.token, "alice")
        self.assert_error(ch, 429, "M_LIMIT_EXCEEDED")
        self.assert_error(self.req("POST", "/_matrix/client/v1/login/get_token", {}), 401, "M_MISSING_TOKEN")


class LoginTokenDisabledTests(AccountsTestCase):
    def test_disabled(self) -> None:
        """Without login_via_existing_session, get_token is 404 M_UNRECOGNIZED and unknown tokens are 403."""
        _, token = self.hs.create_user("alice", "pw")
        self.assert_error(self.req("POST", "/_matrix/client/v1/login/get_token", {}, token), 404, "M_UNRECOGNIZED")
        self.assert_error(self.req("POST", "/login", {"type": "m.login.token", "token": "mdl_x"}), 403,
                          "M_FORBIDDEN")


class RefreshTests(AccountsTestCase):
    CONFIG = {"refreshable_access_token_lifetime": "1m", "refresh_token_lifetime": "1h"}

    def setUp(self) -> None:
        super().setUp()
        self.hs.create_user("alice", "pw")
        self.session = self.login("alice", refresh_token=True).json_body

    def refresh(self, token: str) -> Any:
        return self.req("POST", "/refresh", {"refresh_token": token})

    def test_login_with_refresh(self) -> None:
        """refresh_token: true gives a refresh token and a token that expires (soft logout)."""
        self.assertEqual(self.session["expires_in_ms"], 60_000)
        self.assertEqual(self.whoami(self.session["access_token"]).code, 200)
        self.hs.advance(61)
        ch = self.whoami(self.session["access_token"])
        self.assert_error(ch, 401, "M_UNKNOWN_TOKEN")
        self.assertIs(ch.json_body["soft_logout"], True)

    def test_rotation(self) -> None:
        """Refreshing rotates: once the new token is used, the old refresh token is 401."""
        ch = self.refresh(self.session["refresh_token"])
        self.assertEqual(ch.code, 200, ch.json_body)
        new = ch.json_body
        self.assertEqual(new["expires_in_ms"], 60_000)
        self.assertNotEqual(new["refresh_token"], self.session["refresh_token"])
        who = self.whoami(new["access_token"]).json_body
        self.assertEqual(who["device_id"], self.session["device_id"])
        ch = self.refresh(self.session["refresh_token"])
        self.assert_error(ch, 401, "M_UNKNOWN_TOKEN")
        self.assertIs(ch.json_body["soft_logout"], False)
        self.assert_error(self.whoami(self.session["access_token"]), 401, "M_UNKNOWN_TOKEN")

    def test_retry_before_new_token_used(self) -> None:
        """Until the new tokens are used, the old refresh token may be retried; the unused pair dies."""
        first = self.refresh(self.session["refresh_token"]).json_body
        second = self.refresh(self.session["refresh_token"]).json_body
        self.assertNotEqual(first["access_token"], second["access_token"])
        self.assert_error(self.whoami(first["access_token"]), 401, "M_UNKNOWN_TOKEN")
        self.assert_error(self.refresh(first["refresh_token"]), 401, "M_UNKNOWN_TOKEN")
        third = self.refresh(second["refresh_token"]).json_body
        self.assertEqual(self.whoami(third["access_token"]).code, 200)
        self.assert_error(self.refresh(self.session["refresh_token"]), 401, "M_UNKNOWN_TOKEN")
        self.assert_error(self.refresh(second["refresh_token"]), 401, "M_UNKNOWN_TOKEN")

    def test_refresh_token_expiry(self) -> None:
        """An expired refresh token is a soft logout."""
        self.hs.advance(3601)
        ch = self.refresh(self.session["refresh_token"])
        self.assert_error(ch, 401, "M_UNKNOWN_TOKEN")
        self.assertIs(ch.json_body["soft_logout"], True)

    def test_bad_refresh_requests(self) -> None:
        """Unknown tokens are 401; missing or non-string tokens are 400."""
        self.assert_error(self.refresh("mdr_unknown"), 401, "M_UNKNOWN_TOKEN")
        self.assert_error(self.req("POST", "/refresh", {}), 400, "M_MISSING_PARAM")
        self.assert_error(self.req("POST", "/refresh", {"refresh_token": 1}), 400, "M_BAD_JSON")

    def test_logout_with_expired_token_revokes_refresh(self) -> None:
        """A soft-logged-out client can still log out; that revokes its refresh token."""
        self.hs.advance(61)
        self.assertEqual(self.req("POST", "/logout", {}, self.session["access_token"]).code, 200)
        self.assert_error(self.refresh(self.session["refresh_token"]), 401, "M_UNKNOWN_TOKEN")


class SessionLifetimeTests(AccountsTestCase):
    CONFIG = {"nonrefreshable_access_token_lifetime": "10m"}

    def test_nonrefreshable_lifetime(self) -> None:
        """nonrefreshable_access_token_lifetime makes plain tokens expire and says so."""
        self.hs.create_user("alice", "pw")
        body = self.login("alice").json_body
        self.assertEqual(body["expires_in_ms"], 600_000)
        self.hs.advance(601)
        self.assert_error(self.whoami(body["access_token"]), 401, "M_UNKNOWN_TOKEN")


class LogoutTests(AccountsTestCase):
    def test_logout(self) -> None:
        """/logout kills the token and its device, and nothing else."""
        self.hs.create_user("alice", "pw")
        a = self.login("alice", device_id="A").json_body
        b = self.login("alice", device_id="B").json_body
        self.assertEqual(self.req("POST", "/logout", {}, a["access_token"]).code, 200)
        self.assert_error(self.whoami(a["access_token"]), 401, "M_UNKNOWN_TOKEN")
        devices = self.req("GET", "/devices", token=b["access_token"]).json_body["devices"]
        self.assertNotIn("A", [d["device_id"] for d in devices])
        self.assertEqual(self.whoami(b["access_token"]).code, 200)
        self.assert_error(self.req("POST", "/logout", {}), 401, "M_MISSING_TOKEN")

    def test_logout_all(self) -> None:
        """/logout/all kills every token and device of the user, not of others."""
        _, other = self.hs.create_user("bob", "pw")
        self.hs.create_user("alice", "pw")
        a = self.login("alice", device_id="A").json_body
        b = self.login("alice", device_id="B").json_body
        self.assertEqual(self.req("POST", "/logout/all", {}, a["access_token"]).code, 200)
        self.assert_error(self.whoami(a["access_token"]), 401, "M_UNKNOWN_TOKEN")
        self.assert_error(self.whoami(b["access_token"]), 401, "M_UNKNOWN_TOKEN")
        self.assertEqual(self.hs.run(self.hs.components.accounts.devices.get_devices("@alice:test")), [])
        self.assertEqual(self.whoami(other).code, 200)
