"""/account/whoami, /account/password, /account/deactivate and the unsupported 3PID endpoints."""

from __future__ import annotations

from tests.accounts.base import AccountsTestCase


class WhoamiTests(AccountsTestCase):
    def test_whoami(self) -> None:
        """whoami names the user, the device and says not a guest; bad tokens are 401."""
        _, token = self.hs.create_user("alice", "pw", device_id="DEV")
        ch = self.whoami(token)
        self.assertEqual(ch.json_body, {"user_id": "@alice:test", "device_id": "DEV", "is_guest": False})
        self.assert_error(self.whoami("mda_nope"), 401, "M_UNKNOWN_TOKEN")
        self.assert_error(self.req("GET", "/account/whoami"), 401, "M_MISSING_TOKEN")


class PasswordChangeTests(AccountsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.user_id, self.token = self.hs.create_user("alice", "old", device_id="MAIN")
        self.other = self.login("alice", "old", device_id="OTHER").json_body["access_token"]

    def test_change_logs_out_other_devices(self) -> None:
        """Changing the password (UIA with the old one) keeps this session and ends the others."""
        ch = self.with_password_uia("POST", "/account/password", {"new_password": "new"}, self.token, "alice", "old")
        self.assertEqual((ch.code, ch.json_body), (200, {}))
        self.assertEqual(self.whoami(self.token).code, 200)
        self.assert_error(self.whoami(self.other), 401, "M_UNKNOWN_TOKEN")
        devices = [d["device_id"] for d in self.req("GET", "/devices", token=self.token).json_body["devices"]]
        self.assertEqual(devices, ["MAIN"])
        self.assert_error(self.login("alice", "old"), 403, "M_FORBIDDEN")
        self.assertEqual(self.login("alice", "new").code, 200)

    def test_change_keeping_devices(self) -> None:
        """logout_devices: false leaves the other sessions alone."""
        ch = self.with_password_uia("POST", "/account/password", {"new_password": "new", "logout_devices": False},
                                    self.token, "alice", "old")
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(self.whoami(self.other).code, 200)

    def test_wrong_password_and_other_user(self) -> None:
        """A wrong current password, or another user's credentials, do not complete the stage."""
        self.hs.create_user("bob", "bobpw", device_id="B")
        ch = self.with_password_uia("POST", "/account/password", {"new_password": "new"}, self.token, "alice", "bad")
        self.assert_error(ch, 401, "M_FORBIDDEN")
        self.assertEqual(ch.json_body["flows"], [{"stages": ["m.login.password"]}])
        ch = self.with_password_uia("POST", "/account/password", {"new_password": "new"}, self.token, "bob",
                                    "bobpw")
        self.assert_error(ch, 401, "M_FORBIDDEN")
        self.assertEqual(self.login("alice", "old").code, 200)

    def test_completed_stage_not_rerun_and_params_bound(self) -> None:
        """The new password of the first request is the one set; a different one mid-session is 403."""
        ch = self.req("POST", "/account/password", {"new_password": "first"}, self.token)
        session = ch.json_body["session"]
        auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                "password": "old", "session": session}
        ch = self.req("POST", "/account/password", {"new_password": "second", "auth": auth}, self.token)
        self.assert_error(ch, 403, "M_FORBIDDEN")
        ch = self.req("POST", "/account/password", {"auth": auth}, self.token)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(self.login("alice", "first").code, 200)

    def test_session_bound_to_user(self) -> None:
        """Another user cannot finish alice's session."""
        _, bob = self.hs.create_user("bob", "bobpw", device_id="B")
        ch = self.req("POST", "/account/password", {"new_password": "x"}, self.token)
        auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"},
                "password": "bobpw", "session": ch.json_body["session"]}
        self.assert_error(self.req("POST", "/account/password", {"new_password": "x", "auth": auth}, bob), 403,
                          "M_FORBIDDEN")

    def test_bad_requests(self) -> None:
        """Missing or malformed parameters are 400 before any authentication."""
        self.assert_error(self.req("POST", "/account/password", {}, self.token), 400, "M_MISSING_PARAM")
        self.assert_error(self.req("POST", "/account/password", {"new_password": 3}, self.token), 400,
                          "M_BAD_JSON")
        self.assert_error(self.req("POST", "/account/password", {"new_password": "x", "logout_devices": "no"},
                                   self.token), 400, "M_BAD_JSON")
        self.assert_error(self.req("POST", "/account/password", b"[", self.token), 400, "M_NOT_JSON")
        self.assert_error(self.req("POST", "/account/password", {"new_password": "x"}), 401, "M_MISSING_TOKEN")

    def test_no_password_no_flows(self) -> None:
        """A user without a password cannot pass UIA at all: 403."""
        _, token = self.hs.create_user("nopass", None, device_id="N")
        self.assert_error(self.req("POST", "/account/password", {"new_password": "x"}, token), 403, "M_FORBIDDEN")


class PasswordsDisabledTests(AccountsTestCase):
    CONFIG = {"password_config": {"enabled": False}}

    def test_disabled(self) -> None:
        """password_config.enabled false: no password login flow, no password changes."""
        _, token = self.hs.create_user("alice", "pw")
        self.assertEqual(self.req("GET", "/login").json_body["flows"], [{"type": "m.login.token"}])
        self.assertEqual(self.login("alice").code, 400)
        self.assert_error(self.req("POST", "/account/password", {"new_password": "x"}, token), 403, "M_FORBIDDEN")


class DeactivationTests(AccountsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.user_id, self.token = self.hs.create_user("alice", "pw")
        self.bob_id, self.bob_token = self.hs.create_user("bob", "pw")

    def test_deactivate(self) -> None:
        """Deactivation needs UIA, then leaves rooms, rejects invites, clears the profile, kills tokens."""
        shared = self.create_room(self.bob_id, preset="public_chat")
        self.membership(self.user_id, shared, "join")
        invited = self.create_room(self.bob_id)
        self.membership(self.bob_id, invited, "invite", self.user_id)
        self.req("PUT", f"/profile/{self.user_id}/avatar_url", {"avatar_url": "mxc://test/a"}, self.token)

        ch = self.with_password_uia("POST", "/account/deactivate", {"erase": True}, self.token, "alice")
        self.assertEqual((ch.code, ch.json_body), (200, {"id_server_unbind_result": "success"}))

        self.assertEqual(self.member_content(shared, self.user_id)["membership"], "leave")
        self.assertEqual(self.member_content(invited, self.user_id)["membership"], "leave")
        self.assert_error(self.whoami(self.token), 401, "M_UNKNOWN_TOKEN")
        self.assert_error(self.login("alice"), 403, "M_FORBIDDEN")
        self.assert_error(self.req("GET", f"/profile/{self.user_id}"), 404, "M_NOT_FOUND")
        users = self.hs.components.accounts.users
        self.assertTrue(self.hs.run(users.get_user(self.user_id)).deactivated)
        self.assertTrue(self.hs.run(users.is_erased(self.user_id)))
        self.assertEqual(self.hs.run(self.hs.components.core.stores.profiles.get_profile(self.user_id)),
                         (None, None))
        self.assert_error(self.req("GET", "/register/available?username=alice"), 400, "M_USER_IN_USE")
        self.assertEqual(self.whoami(self.bob_token).code, 200)

    def test_deactivate_requires_auth(self) -> None:
        """Without completing UIA nothing happens; bad parameters are 400."""
        ch = self.req("POST", "/account/deactivate", {}, self.token)
        self.assertEqual(ch.code, 401)
        self.assertEqual(self.whoami(self.token).code, 200)
        self.assert_error(self.req("POST", "/account/deactivate", {"erase": "yes"}, self.token), 400, "M_BAD_JSON")
        ch = self.with_password_uia("POST", "/account/deactivate", {}, self.token, "alice", "wrong")
        self.assert_error(ch, 401, "M_FORBIDDEN")
        self.assertEqual(self.whoami(self.token).code, 200)


class ThreepidTests(AccountsTestCase):
    def test_threepids_unsupported(self) -> None:
        """No 3PIDs are listed; adding/binding/requesting tokens is refused, not faked."""
        _, token = self.hs.create_user("alice", "pw")
        self.assertEqual(self.req("GET", "/account/3pid", token=token).json_body, {"threepids": []})
        body = {"client_secret": "s", "sid": "1"}
        for action in ("add", "bind"):
            self.assert_error(self.req("POST", f"/account/3pid/{action}", body, token), 403, "M_THREEPID_DENIED")
        self.assert_error(self.req("POST", "/account/3pid", {"three_pid_creds": body}, token), 403,
                          "M_THREEPID_DENIED")
        for action in ("delete", "unbind"):
            ch = self.req("POST", f"/account/3pid/{action}", {"medium": "email", "address": "a@b.c"}, token)
            self.assert_error(ch, 400, "M_THREEPID_NOT_FOUND")
        request = {"client_secret": "s", "email": "a@b.c", "send_attempt": 1}
        for path in ("/register/email/requestToken", "/account/3pid/email/requestToken",
                     "/account/password/email/requestToken", "/register/msisdn/requestToken"):
            self.assert_error(self.req("POST", path, request), 403, "M_THREEPID_DENIED")
        self.assert_error(self.req("GET", "/account/3pid"), 401, "M_MISSING_TOKEN")
