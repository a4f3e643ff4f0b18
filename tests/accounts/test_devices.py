"""/devices, /devices/{id}, /delete_devices and last-seen tracking."""

from __future__ import annotations

from tests.accounts.base import AccountsTestCase


class DeviceTests(AccountsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.user_id, self.token = self.hs.create_user("alice", "pw", device_id="MAIN")
        self.phone = self.login("alice", device_id="PHONE", initial_device_display_name="Phone").json_body

    def test_list_and_get(self) -> None:
        """The user's devices are listed with names and last-seen data; one is fetched by id."""
        devices = self.req("GET", "/devices", token=self.token).json_body["devices"]
        self.assertEqual([d["device_id"] for d in devices], ["MAIN", "PHONE"])
        self.assertEqual(devices[1]["display_name"], "Phone")
        ch = self.req("GET", "/devices/PHONE", token=self.token)
        self.assertEqual(ch.json_body["device_id"], "PHONE")
        self.assertIn("last_seen_ts", ch.json_body)
        self.assert_error(self.req("GET", "/devices/NOPE", token=self.token), 404, "M_NOT_FOUND")
        _, bob = self.hs.create_user("bob", "pw", device_id="BOBDEV")
        self.assert_error(self.req("GET", "/devices/PHONE", token=bob), 404, "M_NOT_FOUND")
        self.assert_error(self.req("GET", "/devices"), 401, "M_MISSING_TOKEN")

    def test_rename(self) -> None:
        """PUT renames an existing device; unknown ids are 404; bad names are 400."""
        ch = self.req("PUT", "/devices/PHONE", {"display_name": "Old phone"}, self.token)
        self.assertEqual((ch.code, ch.json_body), (200, {}))
        self.assertEqual(self.req("GET", "/devices/PHONE", token=self.token).json_body["display_name"], "Old phone")
        self.assertEqual(self.req("PUT", "/devices/PHONE", {}, self.token).code, 200)
        self.assert_error(self.req("PUT", "/devices/NEW", {"display_name": "x"}, self.token), 404, "M_NOT_FOUND")
        self.assert_error(self.req("PUT", "/devices/PHONE", {"display_name": 5}, self.token), 400, "M_BAD_JSON")
        self.assert_error(self.req("PUT", "/devices/PHONE", {"display_name": "x" * 101}, self.token), 400,
                          "M_INVALID_PARAM")
        self.assert_error(self.req("PUT", "/devices/PHONE", b"nope", self.token), 400, "M_NOT_JSON")

    def test_delete_needs_uia_and_kills_tokens(self) -> None:
        """DELETE asks for the password, then removes the device and its access token."""
        ch = self.req("DELETE", "/devices/PHONE", {}, self.token)
        self.assertEqual(ch.code, 401)
        self.assertEqual(self.whoami(self.phone["access_token"]).code, 200)
        ch = self.with_password_uia("DELETE", "/devices/PHONE", {}, self.token, "alice")
        self.assertEqual((ch.code, ch.json_body), (200, {}))
        self.assert_error(self.whoami(self.phone["access_token"]), 401, "M_UNKNOWN_TOKEN")
        self.assert_error(self.req("GET", "/devices/PHONE", token=self.token), 404, "M_NOT_FOUND")
        self.assertEqual(self.whoami(self.token).code, 200)
        # Deleting again (already gone) still succeeds.
        self.assertEqual(self.with_password_uia("DELETE", "/devices/PHONE", {}, self.token, "alice").code, 200)

    def test_delete_session_bound_to_device(self) -> None:
        """A UIA session opened to delete one device cannot delete another."""
        ch = self.req("DELETE", "/devices/PHONE", {}, self.token)
        auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                "password": "pw", "session": ch.json_body["session"]}
        self.assert_error(self.req("DELETE", "/devices/MAIN", {"auth": auth}, self.token), 403, "M_FORBIDDEN")
        self.assertEqual(self.whoami(self.token).code, 200)

    def test_delete_devices(self) -> None:
        """POST /delete_devices removes every listed device after UIA; the list is required."""
        tablet = self.login("alice", device_id="TABLET").json_body
        ch = self.with_password_uia("POST", "/delete_devices", {"devices": ["PHONE", "TABLET", "UNKNOWN"]},
                                    self.token, "alice")
        self.assertEqual(ch.code, 200, ch.json_body)
        for session in (self.phone, tablet):
            self.assert_error(self.whoami(session["access_token"]), 401, "M_UNKNOWN_TOKEN")
        devices = self.req("GET", "/devices", token=self.token).json_body["devices"]
        self.assertEqual([d["device_id"] for d in devices], ["MAIN"])
        self.assert_error(self.req("POST", "/delete_devices", {}, self.token), 400, "M_MISSING_PARAM")
        self.assert_error(self.req("POST", "/delete_devices", {"devices": "PHONE"}, self.token), 400, "M_BAD_JSON")

    def test_delete_wrong_password(self) -> None:
        """A wrong password does not delete anything."""
        ch = self.with_password_uia("DELETE", "/devices/PHONE", {}, self.token, "alice", "wrong")
        self.assert_error(ch, 401, "M_FORBIDDEN")
        self.assertEqual(self.whoami(self.phone["access_token"]).code, 200)

    def test_last_seen_is_recorded_and_throttled(self) -> None:
        """Requests record the device's last-seen IP, time and user agent at most every 5 minutes."""
        t0 = int(self.hs.reactor.seconds() * 1000)
        self.hs.request("GET", "/_matrix/client/v3/account/whoami", access_token=self.phone["access_token"],
                        headers={"User-Agent": "TestClient/1"})
        device = self.hs.run(self.hs.components.accounts.devices.get_device(self.user_id, "PHONE"))
        self.assertEqual((device.last_seen_ip, device.last_seen_ts, device.last_seen_user_agent),
                         ("127.0.0.1", t0, "TestClient/1"))
        self.hs.advance(60)
        self.hs.request("GET", "/_matrix/client/v3/account/whoami", access_token=self.phone["access_token"],
                        headers={"User-Agent": "TestClient/2"})
        device = self.hs.run(self.hs.components.accounts.devices.get_device(self.user_id, "PHONE"))
        self.assertEqual((device.last_seen_ts, device.last_seen_user_agent), (t0, "TestClient/1"))
        self.hs.advance(300)
        self.whoami(self.phone["access_token"])
        listed = self.req("GET", "/devices/PHONE", token=self.token).json_body
        self.assertEqual(listed["last_seen_ts"], t0 + 360_000)
        self.assertEqual(listed["last_seen_ip"], "127.0.0.1")


class GuestDeviceTests(AccountsTestCase):
    CONFIG = {"allow_guest_access": True}

    def test_guest_devices(self) -> None:
        """Guests may list and rename their devices but not delete them."""
        body = self.req("POST", "/register?kind=guest", {}).json_body
        token, device = body["access_token"], body["device_id"]
        self.assertEqual(len(self.req("GET", "/devices", token=token).json_body["devices"]), 1)
        self.assertEqual(self.req("PUT", f"/devices/{device}", {"display_name": "G"}, token).code, 200)
        self.assert_error(self.req("DELETE", f"/devices/{device}", {}, token), 403, "M_GUEST_ACCESS_FORBIDDEN")
