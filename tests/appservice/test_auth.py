"""as_token authentication, identity assertion (user_id / device_id), AS registration and login,
and exclusive namespaces."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.appservice.fake import AS_TOKEN, as_request, make_homeserver_with_service, registration

WHOAMI = "/_matrix/client/v3/account/whoami"
REGISTER = "/_matrix/client/v3/register"
LOGIN = "/_matrix/client/v3/login"


class IdentityAssertionTestCase(TestCase):
    def setUp(self) -> None:
        self.hs, self.fake = make_homeserver_with_service(self)

    def _register(self, localpart: str) -> str:
        ch = as_request(self.hs, "POST", REGISTER, {"type": "m.login.application_service", "username": localpart,
                                                     "inhibit_login": True})
        self.assertEqual(ch.code, 200, ch.json_body)
        return str(ch.json_body["user_id"])

    def test_as_token_acts_as_sender(self) -> None:
        """The as_token alone acts as the service's sender, which exists from start-up."""
        ch = as_request(self.hs, "GET", WHOAMI)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body["user_id"], "@bridgebot:test")
        self.assertNotIn("device_id", ch.json_body)

    def test_masquerade_as_namespace_user(self) -> None:
        """user_id= acts as a registered user of the service's namespace."""
        user = self._register("_bridge_alice")
        ch = as_request(self.hs, "GET", WHOAMI, user_id=user)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body["user_id"], "@_bridge_alice:test")
        ch = as_request(self.hs, "GET", WHOAMI, user_id="@bridgebot:test")
        self.assertEqual(ch.json_body["user_id"], "@bridgebot:test")

    def test_masquerade_outside_namespace_refused(self) -> None:
        """A user_id outside the service's namespaces is 403 M_EXCLUSIVE, even if the user exists."""
        self.hs.create_user("carol")
        for target in ("@carol:test", "@_bridge_x:other.server"):
            ch = as_request(self.hs, "GET", WHOAMI, user_id=target)
            self.assertEqual(ch.code, 403, ch.json_body)
            self.assertEqual(ch.json_body["errcode"], "M_EXCLUSIVE")

    def test_masquerade_unregistered_user_refused(self) -> None:
        """A namespace user the service never registered is 403 M_FORBIDDEN."""
        ch = as_request(self.hs, "GET", WHOAMI, user_id="@_bridge_ghost:test")
        self.assertEqual(ch.code, 403, ch.json_body)
        self.assertEqual(ch.json_body["errcode"], "M_FORBIDDEN")

    def test_device_id_masquerading(self) -> None:
        """device_id= must be a device of the asserted user: 400 M_UNKNOWN_DEVICE otherwise."""
        ch = as_request(self.hs, "POST", REGISTER, {"type": "m.login.application_service",
                                                     "username": "_bridge_dev", "device_id": "DEV1"})
        self.assertEqual(ch.code, 200, ch.json_body)
        ch = self.hs.request("GET", WHOAMI + "?user_id=%40_bridge_dev%3Atest&device_id=DEV1", access_token=AS_TOKEN)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body["device_id"], "DEV1")
        ch = self.hs.request("GET", WHOAMI + "?user_id=%40_bridge_dev%3Atest&device_id=NOPE", access_token=AS_TOKEN)
        self.assertEqual(ch.code, 400, ch.json_body)
        self.assertEqual(ch.json_body["errcode"], "M_UNKNOWN_DEVICE")

    def test_normal_tokens_unaffected(self) -> None:
        """User access tokens still work, and user_id= is ignored for them; unknown tokens are 401."""
        user, token = self.hs.create_user("dave")
        ch = self.hs.request("GET", WHOAMI + "?user_id=%40_bridge_x%3Atest", access_token=token)
        self.assertEqual(ch.json_body["user_id"], user)
        ch = self.hs.request("GET", WHOAMI, access_token="nope")
        self.assertEqual(ch.code, 401)
        self.assertEqual(ch.json_body["errcode"], "M_UNKNOWN_TOKEN")


class AppServiceRegistrationTestCase(TestCase):
    def setUp(self) -> None:
        # Registration disabled for normal users: services may still register theirs.
        self.hs, self.fake = make_homeserver_with_service(self, config={"enable_registration": False})

    def test_register_in_namespace(self) -> None:
        """m.login.application_service registers a namespace user without a password, and logs it in."""
        ch = as_request(self.hs, "POST", REGISTER, {"type": "m.login.application_service", "username": "_bridge_bob"})
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body["user_id"], "@_bridge_bob:test")
        ch2 = self.hs.request("GET", WHOAMI, access_token=ch.json_body["access_token"])
        self.assertEqual(ch2.json_body["user_id"], "@_bridge_bob:test")
        info = self.hs.run(self.hs.components.accounts.users.get_user("@_bridge_bob:test"))
        self.assertEqual(info.appservice_id, "bridge")
        ch = as_request(self.hs, "POST", REGISTER, {"type": "m.login.application_service", "username": "_bridge_bob"})
        self.assertEqual(ch.json_body["errcode"], "M_USER_IN_USE")

    def test_register_outside_namespace(self) -> None:
        """A service registering outside its namespaces gets 400 M_EXCLUSIVE."""
        ch = as_request(self.hs, "POST", REGISTER, {"type": "m.login.application_service", "username": "someone"})
        self.assertEqual(ch.code, 400, ch.json_body)
        self.assertEqual(ch.json_body["errcode"], "M_EXCLUSIVE")

    def test_register_needs_valid_as_token(self) -> None:
        """Without a token 401 M_MISSING_TOKEN; with a user's or an unknown token 401 M_UNKNOWN_TOKEN."""
        body = {"type": "m.login.application_service", "username": "_bridge_bob"}
        ch = self.hs.request("POST", REGISTER, body)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (401, "M_MISSING_TOKEN"))
        _, user_token = self.hs.create_user("eve")
        for token in (user_token, "garbage"):
            ch = self.hs.request("POST", REGISTER, body, access_token=token)
            self.assertEqual((ch.code, ch.json_body["errcode"]), (401, "M_UNKNOWN_TOKEN"))

    def test_login_as_namespace_user(self) -> None:
        """m.login.application_service logs in as an existing namespace user (localpart or full id)."""
        as_request(self.hs, "POST", REGISTER, {"type": "m.login.application_service", "username": "_bridge_bob",
                                               "inhibit_login": True})
        for user in ("_bridge_bob", "@_bridge_bob:test"):
            ch = as_request(self.hs, "POST", LOGIN, {"type": "m.login.application_service",
                                                     "identifier": {"type": "m.id.user", "user": user}})
            self.assertEqual(ch.code, 200, ch.json_body)
            self.assertEqual(ch.json_body["user_id"], "@_bridge_bob:test")
            self.assertIn("device_id", ch.json_body)
        ch = self.hs.request("GET", LOGIN)
        self.assertIn({"type": "m.login.application_service"}, ch.json_body["flows"])

    def test_login_refusals(self) -> None:
        """Login outside the namespace is 403 M_EXCLUSIVE; without the as_token 401."""
        self.hs.create_user("frank")
        body = {"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": "frank"}}
        ch = as_request(self.hs, "POST", LOGIN, body)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (403, "M_EXCLUSIVE"))
        ch = self.hs.request("POST", LOGIN, body)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (401, "M_MISSING_TOKEN"))


class ExclusiveNamespaceTestCase(TestCase):
    def setUp(self) -> None:
        shared = registration(id="shared", as_token="a2", hs_token="h2", sender_localpart="sharedbot",
                              namespaces={"users": [{"regex": "@shared_.*:test", "exclusive": False},
                                                    {"regex": "@irc_.*:test", "exclusive": True}]})
        self.hs, self.fake = make_homeserver_with_service(self, registration(), shared)

    def test_normal_user_cannot_register_exclusive_id(self) -> None:
        """Normal registration of an id in an exclusive namespace (or a service's sender) is M_EXCLUSIVE."""
        for name in ("bridgebot", "irc_bob", "IRC_bob"):
            ch = self.hs.request("GET", f"/_matrix/client/v3/register/available?username={name}")
            self.assertEqual((ch.code, ch.json_body["errcode"]), (400, "M_EXCLUSIVE"), name)
        ch = self.hs.request("POST", REGISTER, {"username": "irc_carl", "password": "pw-123456789"})
        self.assertEqual((ch.code, ch.json_body["errcode"]), (400, "M_EXCLUSIVE"))

    def test_non_exclusive_namespace_open_to_users(self) -> None:
        """A non-exclusive namespace does not stop normal registration."""
        ch = self.hs.request("GET", "/_matrix/client/v3/register/available?username=shared_x")
        self.assertEqual(ch.code, 200, ch.json_body)

    def test_exclusive_alias_namespace(self) -> None:
        """Normal users may not create aliases in an exclusive alias namespace; the service may."""
        user, token = self.hs.create_user("gina")
        room = self.hs.request("POST", "/_matrix/client/v3/createRoom", {}, access_token=token).json_body["room_id"]
        ch = self.hs.request("PUT", "/_matrix/client/v3/directory/room/%23_bridge_x:test", {"room_id": room},
                             access_token=token)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (400, "M_EXCLUSIVE"))
        self.hs.request("POST", f"/_matrix/client/v3/rooms/{room}/invite", {"user_id": "@bridgebot:test"},
                        access_token=token)
        self.assertEqual(as_request(self.hs, "POST", f"/_matrix/client/v3/rooms/{room}/join", {}).code, 200)
        ch = as_request(self.hs, "PUT", "/_matrix/client/v3/directory/room/%23_bridge_x:test", {"room_id": room})
        self.assertEqual(ch.code, 200, ch.json_body)


class TimestampMassagingTestCase(TestCase):
    def setUp(self) -> None:
        self.hs, self.fake = make_homeserver_with_service(self)
        self.user, self.token = self.hs.create_user("alice")
        self.room = as_request(self.hs, "POST", "/_matrix/client/v3/createRoom",
                               {"invite": [self.user]}).json_body["room_id"]
        self.hs.request("POST", f"/_matrix/client/v3/rooms/{self.room}/join", {}, access_token=self.token)

    def _event(self, event_id: str, token: str) -> dict:
        ch = self.hs.request("GET", f"/_matrix/client/v3/rooms/{self.room}/event/{event_id}", access_token=token)
        self.assertEqual(ch.code, 200, ch.json_body)
        return dict(ch.json_body)

    def test_service_sets_origin_server_ts(self) -> None:
        """?ts= sets origin_server_ts on /send and /state for application services only."""
        ch = as_request(self.hs, "PUT", f"/_matrix/client/v3/rooms/{self.room}/send/m.room.message/t1?ts=1234567",
                        {"msgtype": "m.text", "body": "old"})
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(self._event(ch.json_body["event_id"], self.token)["origin_server_ts"], 1234567)
        ch = as_request(self.hs, "PUT", f"/_matrix/client/v3/rooms/{self.room}/state/m.bridge/k?ts=7654321",
                        {"x": 1})
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(self._event(ch.json_body["event_id"], self.token)["origin_server_ts"], 7654321)
        ch = self.hs.request("PUT", f"/_matrix/client/v3/rooms/{self.room}/send/m.room.message/t2?ts=1234567",
                             {"msgtype": "m.text", "body": "user"}, access_token=self.token)
        self.assertNotEqual(self._event(ch.json_body["event_id"], self.token)["origin_server_ts"], 1234567)
        ch = as_request(self.hs, "PUT", f"/_matrix/client/v3/rooms/{self.room}/send/m.room.message/t3?ts=soon",
                        {"msgtype": "m.text", "body": "bad"})
        self.assertEqual(ch.code, 400)
