"""Queries to services: unknown aliases and users, third-party networks, ping."""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from matrixd.appservice.api import AppServiceUnreachable
from tests.appservice.fake import AS_TOKEN, Recorded, as_request, make_homeserver_with_service, registration

PING = "/_matrix/client/v1/appservice/bridge/ping"


class AliasUserQueryTestCase(TestCase):
    def setUp(self) -> None:
        self.hs, self.fake = make_homeserver_with_service(self)
        _, self.token = self.hs.create_user("alice")

    def test_unknown_alias_in_namespace_is_queried(self) -> None:
        """An unknown alias in a service's namespace is asked for; the room it then creates is returned."""
        created: dict[str, str] = {}

        async def respond(rec: Recorded) -> Optional[tuple[int, Any]]:
            if rec.method == "GET" and rec.path == "/_matrix/app/v1/rooms/#_bridge_chan:test":
                ch = as_request(self.hs, "POST", "/_matrix/client/v3/createRoom",
                                {"room_alias_name": "_bridge_chan"}, )
                created["room_id"] = ch.json_body["room_id"]
                return 200, {}
            return None

        self.fake.responder = respond
        ch = self.hs.request("GET", "/_matrix/client/v3/directory/room/%23_bridge_chan:test", access_token=self.token)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body["room_id"], created["room_id"])
        query = [r for r in self.fake.requests if r.method == "GET"][0]
        self.assertEqual(query.token, "hs_token_bridge")

    def test_unknown_alias_service_says_no(self) -> None:
        """A 404 from the service (or an alias outside every namespace) stays 404 M_NOT_FOUND."""
        self.fake.responder = lambda rec: defer.succeed((404, {"errcode": "M_NOT_FOUND"}))  # type: ignore
        ch = self.hs.request("GET", "/_matrix/client/v3/directory/room/%23_bridge_none:test")
        self.assertEqual((ch.code, ch.json_body["errcode"]), (404, "M_NOT_FOUND"))
        self.assertEqual(len(self.fake.requests), 1)
        ch = self.hs.request("GET", "/_matrix/client/v3/directory/room/%23elsewhere:test")
        self.assertEqual(ch.code, 404)
        self.assertEqual(len(self.fake.requests), 1, "aliases outside the namespaces are not queried")

    def test_user_query(self) -> None:
        """query_user asks only the service whose namespace covers the user; True on 2xx."""
        queries = self.hs.components.appservice.queries
        self.assertTrue(self.successResultOf(defer.ensureDeferred(queries.query_user("@_bridge_u:test"))))
        self.assertEqual(self.fake.requests[-1].path, "/_matrix/app/v1/users/@_bridge_u:test")
        self.assertFalse(self.successResultOf(defer.ensureDeferred(queries.query_user("@someone:test"))))
        self.assertEqual(len(self.fake.requests), 1)


class ThirdPartyTestCase(TestCase):
    def setUp(self) -> None:
        self.hs, self.fake = make_homeserver_with_service(self)
        _, self.token = self.hs.create_user("alice")

        async def respond(rec: Recorded) -> Optional[tuple[int, Any]]:
            if rec.path == "/_matrix/app/v1/thirdparty/protocol/gitter":
                return 200, {"user_fields": ["username"], "location_fields": ["room"], "icon": "mxc://x/y",
                             "field_types": {}, "instances": [{"desc": "Gitter", "network_id": "gitter",
                                                               "fields": {}}]}
            if rec.path == "/_matrix/app/v1/thirdparty/location/gitter":
                return 200, [{"alias": "#_bridge_g:test", "protocol": "gitter", "fields": rec.query}]
            if rec.path == "/_matrix/app/v1/thirdparty/user/gitter":
                return 200, [{"userid": "@_bridge_g:test", "protocol": "gitter", "fields": rec.query}]
            if rec.path == "/_matrix/app/v1/thirdparty/location":
                return 200, [{"alias": rec.query["alias"][0], "protocol": "gitter", "fields": {}}]
            if rec.path == "/_matrix/app/v1/thirdparty/user":
                return 200, [{"userid": rec.query["userid"][0], "protocol": "gitter", "fields": {}}]
            return 404, {"errcode": "M_NOT_FOUND"}

        self.fake.responder = respond

    def _get(self, path: str) -> Any:
        return self.hs.request("GET", "/_matrix/client/v3/thirdparty" + path, access_token=self.token)

    def test_protocols(self) -> None:
        """Protocols come from the services declaring them, instances with a server-unique instance_id."""
        ch = self._get("/protocols")
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(list(ch.json_body), ["gitter"])
        self.assertEqual(ch.json_body["gitter"]["instances"][0]["instance_id"], "bridge|gitter")
        ch = self._get("/protocol/gitter")
        self.assertEqual(ch.json_body["user_fields"], ["username"])
        ch = self._get("/protocol/irc")
        self.assertEqual((ch.code, ch.json_body["errcode"]), (404, "M_NOT_FOUND"))

    def test_lookups_proxy_fields(self) -> None:
        """Location/user searches pass the client's fields through; reverse lookups pass alias/userid."""
        ch = self._get("/location/gitter?room=matrix-org%2Fmatrix")
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body[0]["fields"], {"room": ["matrix-org/matrix"]})
        ch = self._get("/user/gitter?username=bob")
        self.assertEqual(ch.json_body[0]["userid"], "@_bridge_g:test")
        self.assertEqual(self._get("/location?alias=%23x:test").json_body[0]["alias"], "#x:test")
        self.assertEqual(self._get("/user?userid=%40u:test").json_body[0]["userid"], "@u:test")
        self.assertEqual(self._get("/location/irc?x=1").json_body, [])
        self.assertEqual(self._get("/location").code, 400)

    def test_requires_auth(self) -> None:
        """The third-party endpoints need an access token."""
        ch = self.hs.request("GET", "/_matrix/client/v3/thirdparty/protocols")
        self.assertEqual(ch.code, 401)

    def test_unreachable_service_left_out(self) -> None:
        """A service that cannot be reached contributes nothing (no 500)."""
        self.fake.unreachable = AppServiceUnreachable("refused")
        self.assertEqual(self._get("/protocols").json_body, {})
        self.assertEqual(self._get("/location/gitter").json_body, [])


class PingTestCase(TestCase):
    def setUp(self) -> None:
        self.hs, self.fake = make_homeserver_with_service(
            self, registration(),
            registration(id="nourl", url=None, as_token="na", hs_token="nh", sender_localpart="nourlbot",
                         namespaces={}),
        )

    def test_ping_ok(self) -> None:
        """The service pings itself: POST /_matrix/app/v1/ping with the transaction id; duration_ms back."""
        ch = self.hs.request("POST", PING, {"transaction_id": "t-1"}, access_token=AS_TOKEN)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertIsInstance(ch.json_body["duration_ms"], int)
        rec = self.fake.requests[-1]
        self.assertEqual((rec.method, rec.path, rec.body, rec.token),
                         ("POST", "/_matrix/app/v1/ping", {"transaction_id": "t-1"}, "hs_token_bridge"))

    def test_ping_forbidden_for_others(self) -> None:
        """Users and other services get 403 M_FORBIDDEN."""
        _, token = self.hs.create_user("alice")
        for tok in (token, "na"):
            ch = self.hs.request("POST", PING, {}, access_token=tok)
            self.assertEqual((ch.code, ch.json_body["errcode"]), (403, "M_FORBIDDEN"))

    def test_ping_without_url(self) -> None:
        """A service without a URL gets 400 M_URL_NOT_SET."""
        ch = self.hs.request("POST", "/_matrix/client/v1/appservice/nourl/ping", {}, access_token="na")
        self.assertEqual((ch.code, ch.json_body["errcode"]), (400, "M_URL_NOT_SET"))

    def test_ping_failures(self) -> None:
        """Bad status 502 M_BAD_STATUS (with status/body), refused 502 M_CONNECTION_FAILED, timeout 504."""
        self.fake.responder = lambda rec: defer.succeed((401, {"errcode": "M_UNKNOWN_TOKEN"}))  # type: ignore
        ch = self.hs.request("POST", PING, {}, access_token=AS_TOKEN)
        self.assertEqual((ch.code, ch.json_body["errcode"], ch.json_body["status"]), (502, "M_BAD_STATUS", 401))
        self.assertIn("M_UNKNOWN_TOKEN", ch.json_body["body"])
        self.fake.unreachable = AppServiceUnreachable("refused")
        ch = self.hs.request("POST", PING, {}, access_token=AS_TOKEN)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (502, "M_CONNECTION_FAILED"))
        self.fake.unreachable = AppServiceUnreachable("slow", timed_out=True)
        ch = self.hs.request("POST", PING, {}, access_token=AS_TOKEN)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (504, "M_CONNECTION_TIMEOUT"))
        ch = self.hs.request("POST", PING, {"transaction_id": 5}, access_token=AS_TOKEN)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (400, "M_BAD_JSON"))


class UnknownUserQueryTestCase(TestCase):
    """Profile lookups and invites of unknown local users in a namespace ask the service first."""

    def setUp(self) -> None:
        self.hs, self.fake = make_homeserver_with_service(self)
        self.alice, self.token = self.hs.create_user("alice")

    def _user_queries(self) -> list[str]:
        return [r.path for r in self.fake.requests if r.method == "GET" and "/users/" in r.path]

    def test_profile_service_registers_user(self) -> None:
        """A 200 from a service that registered the user itself: the profile lookup answers with it."""
        async def respond(rec: Recorded) -> Optional[tuple[int, Any]]:
            if rec.path == "/_matrix/app/v1/users/@_bridge_bob:test":
                ch = as_request(self.hs, "POST", "/_matrix/client/v3/register",
                                {"type": "m.login.application_service", "username": "_bridge_bob",
                                 "inhibit_login": True})
                assert ch.code == 200, ch.json_body
                ch = as_request(self.hs, "PUT", "/_matrix/client/v3/profile/@_bridge_bob:test/displayname",
                                {"displayname": "Bob (IRC)"}, user_id="@_bridge_bob:test")
                assert ch.code == 200, ch.json_body
                return 200, {}
            return None

        self.fake.responder = respond
        ch = self.hs.request("GET", "/_matrix/client/v3/profile/@_bridge_bob:test", access_token=self.token)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body["displayname"], "Bob (IRC)")
        self.assertEqual(self._user_queries(), ["/_matrix/app/v1/users/@_bridge_bob:test"])
        # Known now: no second query.
        ch = self.hs.request("GET", "/_matrix/client/v3/profile/@_bridge_bob:test/displayname",
                             access_token=self.token)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(len(self._user_queries()), 1)

    def test_profile_service_answers_200_only(self) -> None:
        """A 200 from a service that did not register the user: the server provisions it for the service."""
        ch = self.hs.request("GET", "/_matrix/client/v3/profile/@_bridge_carol:test", access_token=self.token)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body, {"displayname": "_bridge_carol"})
        user = self.successResultOf(defer.ensureDeferred(
            self.hs.components.accounts.users.get_user("@_bridge_carol:test")))
        assert user is not None
        self.assertEqual(user.appservice_id, "bridge")
        # The service may now act as its user.
        ch = as_request(self.hs, "GET", "/_matrix/client/v3/account/whoami", user_id="@_bridge_carol:test")
        self.assertEqual(ch.json_body["user_id"], "@_bridge_carol:test")

    def test_profile_service_says_no(self) -> None:
        """A 404 from the service, or a user outside every namespace (not queried), stays 404."""
        self.fake.responder = lambda rec: defer.succeed((404, {"errcode": "M_NOT_FOUND"}))  # type: ignore
        ch = self.hs.request("GET", "/_matrix/client/v3/profile/@_bridge_nobody:test", access_token=self.token)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (404, "M_NOT_FOUND"))
        self.assertEqual(len(self._user_queries()), 1)
        ch = self.hs.request("GET", "/_matrix/client/v3/profile/@stranger:test", access_token=self.token)
        self.assertEqual(ch.code, 404)
        self.assertEqual(len(self._user_queries()), 1, "users outside the namespaces are not queried")
        ch = self.hs.request("GET", f"/_matrix/client/v3/profile/{self.alice}", access_token=self.token)
        self.assertEqual(ch.code, 200)
        self.assertEqual(len(self._user_queries()), 1, "existing users are not queried")

    def test_non_exclusive_namespace_queried(self) -> None:
        """Non-exclusive user namespaces are queried too."""
        hs, fake = make_homeserver_with_service(self, registration(namespaces={
            "users": [{"regex": "@irc_.*:test", "exclusive": False}], "aliases": [], "rooms": []}))
        _, token = hs.create_user("dave")
        ch = hs.request("GET", "/_matrix/client/v3/profile/@irc_x:test", access_token=token)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual([r.path for r in fake.requests if r.method == "GET"],
                         ["/_matrix/app/v1/users/@irc_x:test"])

    def test_invite_queries_service(self) -> None:
        """Inviting an unknown namespace user asks the service; the invite carries the provisioned profile."""
        ch = self.hs.request("POST", "/_matrix/client/v3/createRoom", {}, access_token=self.token)
        room_id = ch.json_body["room_id"]
        ch = self.hs.request("POST", f"/_matrix/client/v3/rooms/{room_id}/invite",
                             {"user_id": "@_bridge_erin:test"}, access_token=self.token)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(self._user_queries(), ["/_matrix/app/v1/users/@_bridge_erin:test"])
        ch = self.hs.request("GET", f"/_matrix/client/v3/rooms/{room_id}/state/m.room.member/@_bridge_erin:test",
                             access_token=self.token)
        self.assertEqual(ch.json_body, {"membership": "invite", "displayname": "_bridge_erin"})
        # Inviting someone outside the namespaces asks nobody.
        self.hs.request("POST", f"/_matrix/client/v3/rooms/{room_id}/invite", {"user_id": "@zed:test"},
                        access_token=self.token)
        self.assertEqual(len(self._user_queries()), 1)

    def test_unreachable_service(self) -> None:
        """An unreachable service is a 404 for the profile, not an error."""
        self.fake.unreachable = AppServiceUnreachable("refused")
        ch = self.hs.request("GET", "/_matrix/client/v3/profile/@_bridge_f:test", access_token=self.token)
        self.assertEqual(ch.code, 404, ch.json_body)


class RemoteInviteQueryTestCase(TestCase):
    """An invite from another server for an unknown namespace user asks the service first."""

    def test_remote_invite_of_namespace_user(self) -> None:
        """The invitee is queried and provisioned, and the invite reaches the service in a transaction."""
        import urllib.parse

        from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
        from tests.appservice.fake import FakeAppService, write_registration
        from tests.federation.utils import REMOTE, make_federating_homeserver
        from tests.federation_flow.fake_room import FakeRoom, FakeRoomHost

        path = write_registration(self, registration())
        hs, _network, remote = make_federating_homeserver(self, {"app_service_config_files": [path]})
        fake = FakeAppService()
        hs.components.appservice.api.use_transport(fake)
        carol = f"@carol:{REMOTE}"
        room = FakeRoom(remote, KNOWN_ROOM_VERSIONS["10"], carol, join_rule="invite")
        room.serve(FakeRoomHost(remote))
        invite = room.add("m.room.member", carol, {"membership": "invite"}, "@_bridge_far:test")
        q = urllib.parse.quote
        channel = remote.request(hs, "PUT", f"/_matrix/federation/v2/invite/{q(room.room_id, safe='')}/"
                                 f"{q(invite.event_id, safe='')}",
                                 {"event": invite.get_pdu_json(), "room_version": "10", "invite_room_state": []})
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertIn("/_matrix/app/v1/users/@_bridge_far:test", [r.path for r in fake.requests])
        user = hs.run(hs.components.accounts.users.get_user("@_bridge_far:test"))
        assert user is not None
        self.assertEqual(user.appservice_id, "bridge")
        hs.advance(1)
        delivered = [e["event_id"] for e in fake.transaction_events()]
        self.assertIn(invite.event_id, delivered)
