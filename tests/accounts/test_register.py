"""POST /register (UIA, guests, guest upgrade), /register/available and registration tokens."""

from __future__ import annotations

from typing import Any

from matrixd.testing.http import FakeChannel
from tests.accounts.base import AccountsTestCase


class RegisterTests(AccountsTestCase):
    def test_dummy_flow(self) -> None:
        """A first request gets the 401 with the dummy flow and a session; completing it registers."""
        ch = self.req("POST", "/register", {"username": "alice", "password": "pw"})
        self.assertEqual(ch.code, 401)
        self.assertEqual(ch.json_body["flows"], [{"stages": ["m.login.dummy"]}])
        self.assertEqual(ch.json_body["params"], {})
        self.assertNotIn("errcode", ch.json_body)
        session = ch.json_body["session"]
        ch = self.req("POST", "/register", {"username": "alice", "password": "pw",
                                             "auth": {"type": "m.login.dummy", "session": session}})
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body["user_id"], "@alice:test")
        self.assertEqual(ch.json_body["home_server"], "test")
        who = self.whoami(ch.json_body["access_token"])
        self.assertEqual(who.json_body, {"user_id": "@alice:test", "device_id": ch.json_body["device_id"],
                                         "is_guest": False})

    def test_session_is_single_use(self) -> None:
        """A completed session cannot be spent again: it is gone."""
        ch = self.req("POST", "/register", {"username": "alice", "password": "pw"})
        auth = {"type": "m.login.dummy", "session": ch.json_body["session"]}
        self.assertEqual(self.req("POST", "/register", {"username": "alice", "password": "pw", "auth": auth}).code,
                         200)
        ch = self.req("POST", "/register", {"username": "alice2", "password": "pw", "auth": auth})
        self.assert_error(ch, 400, "M_UNKNOWN")

    def test_session_bound_to_first_request(self) -> None:
        """Changing a parameter mid-session is 403; omitting it uses the first request's value."""
        ch = self.req("POST", "/register", {"username": "alice", "password": "pw"})
        session = ch.json_body["session"]
        auth = {"type": "m.login.dummy", "session": session}
        ch = self.req("POST", "/register", {"username": "mallory", "password": "pw", "auth": auth})
        self.assert_error(ch, 403, "M_FORBIDDEN")
        ch = self.req("POST", "/register", {"auth": auth})
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body["user_id"], "@alice:test")
        self.assertEqual(self.login("alice", "pw").code, 200)

    def test_password_never_stored_in_session(self) -> None:
        """The session keeps only a hash of the password; repeating it is fine, changing it is 403."""
        ch = self.req("POST", "/register", {"username": "alice", "password": "sekrit-pw"})
        session = ch.json_body["session"]
        rows = self.hs.run(self.hs.components.db.execute("t", "SELECT params, hashed_params FROM ui_auth_sessions"))
        self.assertEqual(len(rows), 1)
        self.assertNotIn("sekrit-pw", rows[0][0] + rows[0][1])
        auth = {"type": "m.login.dummy", "session": session}
        ch = self.req("POST", "/register", {"username": "alice", "password": "other-pw", "auth": auth})
        self.assert_error(ch, 403, "M_FORBIDDEN")
        ch = self.req("POST", "/register", {"username": "alice", "password": "sekrit-pw", "auth": auth})
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(self.login("alice", "sekrit-pw").code, 200)

    def test_session_bound_to_endpoint(self) -> None:
        """A registration session cannot authenticate another endpoint."""
        ch = self.req("POST", "/register", {"username": "alice", "password": "pw"})
        session = ch.json_body["session"]
        _, token = self.hs.create_user("bob", "pw")
        ch = self.req("POST", "/account/password", {"new_password": "x", "auth": {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"}, "password": "pw",
            "session": session}}, token)
        self.assert_error(ch, 403, "M_FORBIDDEN")

    def test_unknown_session_and_bad_auth(self) -> None:
        """An unknown session is 400; a non-object auth is 400 M_BAD_JSON; an unoffered stage is a 401 error."""
        ch = self.req("POST", "/register", {"username": "a", "password": "pw",
                                             "auth": {"type": "m.login.dummy", "session": "nope"}})
        self.assert_error(ch, 400, "M_UNKNOWN")
        ch = self.req("POST", "/register", {"username": "a", "password": "pw", "auth": "x"})
        self.assert_error(ch, 400, "M_BAD_JSON")
        ch = self.req("POST", "/register", {"username": "a", "password": "pw"})
        ch = self.req("POST", "/register", {"username": "a", "password": "pw", "auth": {
            "type": "m.login.recaptcha", "session": ch.json_body["session"]}})
        self.assert_error(ch, 401, "M_FORBIDDEN")
        self.assertEqual(ch.json_body["flows"], [{"stages": ["m.login.dummy"]}])

    def test_auth_without_session_opens_one(self) -> None:
        """A first request that already carries a dummy auth dict completes at once."""
        ch = self.req("POST", "/register", {"username": "quick", "password": "pw",
                                             "auth": {"type": "m.login.dummy"}})
        self.assertEqual(ch.code, 200, ch.json_body)

    def test_bad_json_and_missing_params(self) -> None:
        """Bad bodies are 400 and create nothing."""
        ch = self.req("POST", "/register", b"{not json")
        self.assert_error(ch, 400, "M_NOT_JSON")
        ch = self.req("POST", "/register", [1, 2])
        self.assert_error(ch, 400, "M_BAD_JSON")
        ch = self.req("POST", "/register", {"username": "alice"})
        self.assert_error(ch, 400, "M_MISSING_PARAM")
        ch = self.req("POST", "/register", {"username": "alice", "password": 5})
        self.assert_error(ch, 400, "M_BAD_JSON")
        ch = self.req("POST", "/register", {"username": "alice", "password": "pw", "inhibit_login": "yes"})
        self.assert_error(ch, 400, "M_BAD_JSON")
        ch = self.req("POST", "/register?kind=admin", {"username": "alice", "password": "pw"})
        self.assert_error(ch, 400, "M_INVALID_PARAM")
        self.assertIsNone(self.hs.run(self.hs.components.accounts.users.get_user("@alice:test")))

    def test_username_grammar(self) -> None:
        """Usernames are lowercased; bad characters, '_' prefixes and all digits are M_INVALID_USERNAME."""
        for bad in ["al ice", "al:ice", "élan", "_bridge", "12345", "", "a" * 250]:
            ch = self.req("POST", "/register", {"username": bad, "password": "pw"})
            self.assert_error(ch, 400, "M_INVALID_USERNAME")
        body = self.register("Alice")
        self.assertEqual(body["user_id"], "@alice:test")

    def test_user_in_use(self) -> None:
        """Registering a taken name (in any case) is M_USER_IN_USE before authentication."""
        self.register("alice")
        for name in ("alice", "ALICE"):
            ch = self.req("POST", "/register", {"username": name, "password": "pw"})
            self.assert_error(ch, 400, "M_USER_IN_USE")

    def test_generated_username(self) -> None:
        """Without a username the server picks a numeric localpart."""
        ch = self.req("POST", "/register", {"password": "pw", "auth": {"type": "m.login.dummy"}})
        self.assertEqual(ch.code, 200, ch.json_body)
        localpart = ch.json_body["user_id"][1:].split(":")[0]
        self.assertTrue(localpart.isdigit(), localpart)

    def test_inhibit_login(self) -> None:
        """inhibit_login returns only the user id: no token and no device."""
        body = self.register("alice", inhibit_login=True)
        self.assertEqual(body, {"user_id": "@alice:test", "home_server": "test"})
        self.assertEqual(self.hs.run(self.hs.components.accounts.devices.get_devices("@alice:test")), [])

    def test_device_id_and_display_name(self) -> None:
        """The client's device_id and initial_device_display_name are used."""
        body = self.register("alice", device_id="MYPHONE", initial_device_display_name="Phone")
        self.assertEqual(body["device_id"], "MYPHONE")
        ch = self.req("GET", "/devices/MYPHONE", token=body["access_token"])
        self.assertEqual(ch.json_body["display_name"], "Phone")
        ch = self.req("POST", "/register", {"username": "bob", "password": "pw", "device_id": "has space"})
        self.assert_error(ch, 400, "M_INVALID_PARAM")

    def test_refresh_token_on_register(self) -> None:
        """refresh_token: true gets a refresh token and an expiring access token."""
        body = self.register("alice", refresh_token=True)
        self.assertTrue(body["refresh_token"])
        self.assertEqual(body["expires_in_ms"], 5 * 60_000)

    def test_default_displayname(self) -> None:
        """A new user's display name is their localpart."""
        self.register("alice")
        ch = self.req("GET", "/profile/@alice:test/displayname")
        self.assertEqual(ch.json_body, {"displayname": "alice"})


class PasswordPolicyTests(AccountsTestCase):
    CONFIG = {"password_config": {"policy": {"enabled": True, "minimum_length": 8, "require_digit": True}}}

    def test_password_policy(self) -> None:
        """A configured password policy is enforced before authentication."""
        ch = self.req("POST", "/register", {"username": "alice", "password": "short"})
        self.assert_error(ch, 400, "M_PASSWORD_TOO_SHORT")
        ch = self.req("POST", "/register", {"username": "alice", "password": "longenough"})
        self.assert_error(ch, 400, "M_WEAK_PASSWORD")
        self.register("alice", password="longenough1")


class RegistrationDisabledTests(AccountsTestCase):
    CONFIG = {"enable_registration": False}

    def test_disabled(self) -> None:
        """With enable_registration false, /register and /register/available are 403 M_FORBIDDEN."""
        ch = self.req("POST", "/register", {"username": "alice", "password": "pw"})
        self.assert_error(ch, 403, "M_FORBIDDEN")
        ch = self.req("GET", "/register/available?username=alice")
        self.assert_error(ch, 403, "M_FORBIDDEN")

    def test_guest_disabled(self) -> None:
        """Guest registration is refused unless allow_guest_access."""
        ch = self.req("POST", "/register?kind=guest", {})
        self.assert_error(ch, 403, "M_GUEST_ACCESS_FORBIDDEN")


class AvailabilityTests(AccountsTestCase):
    def test_available(self) -> None:
        """Free names are available; taken, invalid and missing ones are errors."""
        ch = self.req("GET", "/register/available?username=alice")
        self.assertEqual((ch.code, ch.json_body), (200, {"available": True}))
        self.register("alice")
        self.assert_error(self.req("GET", "/register/available?username=Alice"), 400, "M_USER_IN_USE")
        self.assert_error(self.req("GET", "/register/available?username=a%20b"), 400, "M_INVALID_USERNAME")
        self.assert_error(self.req("GET", "/register/available"), 400, "M_MISSING_PARAM")


class RateLimitTests(AccountsTestCase):
    CONFIG = {"rc_registration": {"per_second": 0.1, "burst_count": 2}}

    def test_registration_rate_limited_per_ip(self) -> None:
        """rc_registration counts accounts created per IP; the 401 round trips are free."""
        self.register("a1")
        self.register("a2")
        ch = self.req("POST", "/register", {"username": "a3", "password": "pw"})
        self.assert_error(ch, 429, "M_LIMIT_EXCEEDED")
        self.assertGreater(ch.json_body["retry_after_ms"], 0)
        ch = self.hs.request("POST", "/_matrix/client/v3/register", {"username": "a3", "password": "pw"},
                             headers={"X-Forwarded-For": "10.0.0.1"})
        self.assertEqual(ch.code, 429)  # the listener does not trust X-Forwarded-For
        self.hs.advance(11)
        self.register("a3")


class GuestTests(AccountsTestCase):
    CONFIG = {"allow_guest_access": True}

    def test_guest_registration(self) -> None:
        """kind=guest needs no auth, ignores username/device_id and makes a guest."""
        ch = self.req("POST", "/register?kind=guest", {"username": "ignored", "device_id": "IGNORED",
                                                        "initial_device_display_name": "Guest phone"})
        self.assertEqual(ch.code, 200, ch.json_body)
        body = ch.json_body
        self.assertNotEqual(body["device_id"], "IGNORED")
        self.assertTrue(body["user_id"][1:].split(":")[0].isdigit())
        who = self.whoami(body["access_token"])
        self.assertEqual(who.json_body["is_guest"], True)
        ch = self.req("GET", f"/devices/{body['device_id']}", token=body["access_token"])
        self.assertEqual(ch.json_body["display_name"], "Guest phone")

    def test_guest_restrictions(self) -> None:
        """Guests get M_GUEST_ACCESS_FORBIDDEN on non-guest endpoints and may only set their display name."""
        body = self.req("POST", "/register?kind=guest", {}).json_body
        token, user_id = body["access_token"], body["user_id"]
        self.assert_error(self.req("POST", "/user_directory/search", {"search_term": "x"}, token), 403,
                          "M_GUEST_ACCESS_FORBIDDEN")
        self.assert_error(self.req("POST", "/account/password", {"new_password": "x"}, token), 403,
                          "M_GUEST_ACCESS_FORBIDDEN")
        self.assertEqual(self.req("PUT", f"/profile/{user_id}/displayname", {"displayname": "G"}, token).code, 200)
        self.assert_error(self.req("PUT", f"/profile/{user_id}/avatar_url", {"avatar_url": "mxc://a/b"}, token),
                          403, "M_GUEST_ACCESS_FORBIDDEN")

    def test_guest_upgrade(self) -> None:
        """A guest becomes a full user by registering with guest_access_token and their localpart."""
        body = self.req("POST", "/register?kind=guest", {}).json_body
        localpart = body["user_id"][1:].split(":")[0]
        ch = self.req("POST", "/register", {"username": "someoneelse", "password": "pw",
                                             "guest_access_token": body["access_token"]})
        self.assert_error(ch, 400, "M_INVALID_PARAM")
        ch = self.req("POST", "/register", {"username": localpart, "password": "pw",
                                             "guest_access_token": "mda_bogus"})
        self.assert_error(ch, 403, "M_FORBIDDEN")
        result = self.register(localpart, guest_access_token=body["access_token"])
        self.assertEqual(result["user_id"], body["user_id"])
        self.assertEqual(self.whoami(result["access_token"]).json_body["is_guest"], False)
        self.assertEqual(self.login(localpart, "pw").code, 200)


class RegistrationTokenTests(AccountsTestCase):
    CONFIG = {"registration_requires_token": True, "enable_registration_without_verification": False}

    def setUp(self) -> None:
        super().setUp()
        self.admin_id, self.admin_token = self.hs.create_user("admin", "pw", admin=True)

    def new_token(self, **body: object) -> dict[str, Any]:
        ch = self.req("POST", "/_synapse/admin/v1/registration_tokens/new", body, self.admin_token)
        self.assertEqual(ch.code, 200, ch.json_body)
        token: dict[str, Any] = ch.json_body
        return token

    def attempt(self, username: str, token: str) -> FakeChannel:
        ch = self.req("POST", "/register", {"username": username, "password": "pw"})
        self.assertEqual(ch.json_body["flows"], [{"stages": ["m.login.registration_token"]}])
        return self.req("POST", "/register", {"username": username, "password": "pw", "auth": {
            "type": "m.login.registration_token", "token": token, "session": ch.json_body["session"]}})

    def test_token_flow_and_uses(self) -> None:
        """A token with one use registers one account, then is spent; a wrong token is a 401 error."""
        self.new_token(token="abc", uses_allowed=1)
        ch = self.attempt("u1", "wrong")
        self.assert_error(ch, 401, "M_FORBIDDEN")
        self.assertEqual(self.attempt("u1", "abc").code, 200)
        ch = self.req("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=abc")
        self.assertEqual(ch.json_body, {"valid": False})
        self.assert_error(self.attempt("u2", "abc"), 401, "M_FORBIDDEN")
        token = self.req("GET", "/_synapse/admin/v1/registration_tokens/abc", token=self.admin_token).json_body
        self.assertEqual((token["pending"], token["completed"]), (0, 1))

    def test_validity_endpoint(self) -> None:
        """The validity check says true for live tokens, false for unknown or expired ones."""
        now = int(self.hs.reactor.seconds() * 1000)
        self.new_token(token="live")
        self.new_token(token="soon", expiry_time=now + 1000)
        url = "/_matrix/client/v1/register/m.login.registration_token/validity?token="
        self.assertEqual(self.req("GET", url + "live").json_body, {"valid": True})
        self.assertEqual(self.req("GET", url + "nope").json_body, {"valid": False})
        self.hs.advance(2)
        self.assertEqual(self.req("GET", url + "soon").json_body, {"valid": False})
        self.assert_error(self.req("GET", url[:-7]), 400, "M_MISSING_PARAM")

    def test_abandoned_session_releases_use(self) -> None:
        """A use reserved by a session that never registers comes back when the session expires."""
        self.new_token(token="one", uses_allowed=1)
        ch = self.req("POST", "/register", {"username": "u1", "password": "pw"})
        area = self.hs.components.account_area
        # The stage completed but the process stopped before the account was created.
        self.assertTrue(self.hs.run(area.registration_tokens.reserve_use("one")))
        self.hs.run(area.uia_sessions.add_completed_stage(ch.json_body["session"], "m.login.registration_token",
                                                          "one"))
        url = "/_matrix/client/v1/register/m.login.registration_token/validity?token=one"
        self.assertEqual(self.req("GET", url).json_body, {"valid": False})
        self.hs.advance(25 * 3600)
        self.req("POST", "/register", {"username": "u2", "password": "pw"})  # opening a session sweeps
        info = self.req("GET", "/_synapse/admin/v1/registration_tokens/one", token=self.admin_token).json_body
        self.assertEqual((info["pending"], info["completed"]), (0, 0))
        self.assertEqual(self.req("GET", url).json_body, {"valid": True})

    def test_failed_registration_releases_use(self) -> None:
        """If the name is taken while authenticating, the reserved use is given back."""
        self.new_token(token="one", uses_allowed=1)
        ch = self.req("POST", "/register", {"username": "u1", "password": "pw"})
        self.hs.create_user("u1")
        # Only the auth dict: the name is checked (and found taken) after the stage reserved the use.
        ch = self.req("POST", "/register", {"auth": {
            "type": "m.login.registration_token", "token": "one", "session": ch.json_body["session"]}})
        self.assert_error(ch, 400, "M_USER_IN_USE")
        info = self.req("GET", "/_synapse/admin/v1/registration_tokens/one", token=self.admin_token).json_body
        self.assertEqual((info["pending"], info["completed"]), (0, 0))

    def test_admin_api(self) -> None:
        """Admins list, create, update and delete tokens; others get 403; bad values are 400."""
        _, user_token = self.hs.create_user("bob", "pw")
        ch = self.req("GET", "/_synapse/admin/v1/registration_tokens", token=user_token)
        self.assert_error(ch, 403, "M_FORBIDDEN")
        generated = self.new_token(length=20)
        self.assertEqual(len(generated["token"]), 20)
        self.new_token(token="t1", uses_allowed=0)
        ch = self.req("POST", "/_synapse/admin/v1/registration_tokens/new", {"token": "t1"}, self.admin_token)
        self.assert_error(ch, 400, "M_INVALID_PARAM")
        for bad in ({"token": "no spaces"}, {"uses_allowed": -1}, {"expiry_time": 5}, {"length": 65}):
            ch = self.req("POST", "/_synapse/admin/v1/registration_tokens/new", bad, self.admin_token)
            self.assert_error(ch, 400, "M_INVALID_PARAM")
        listed = self.req("GET", "/_synapse/admin/v1/registration_tokens?valid=false", token=self.admin_token)
        self.assertEqual([t["token"] for t in listed.json_body["registration_tokens"]], ["t1"])
        ch = self.req("PUT", "/_synapse/admin/v1/registration_tokens/t1", {"uses_allowed": 5}, self.admin_token)
        self.assertEqual(ch.json_body["uses_allowed"], 5)
        listed = self.req("GET", "/_synapse/admin/v1/registration_tokens?valid=true", token=self.admin_token)
        self.assertEqual(len(listed.json_body["registration_tokens"]), 2)
        self.assertEqual(self.req("DELETE", "/_synapse/admin/v1/registration_tokens/t1",
                                  token=self.admin_token).code, 200)
        ch = self.req("GET", "/_synapse/admin/v1/registration_tokens/t1", token=self.admin_token)
        self.assert_error(ch, 404, "M_NOT_FOUND")
        ch = self.req("DELETE", "/_synapse/admin/v1/registration_tokens/t1", token=self.admin_token)
        self.assert_error(ch, 404, "M_NOT_FOUND")
