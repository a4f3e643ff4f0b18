"""The endpoints the framework serves itself: /versions, /.well-known, /capabilities."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from matrixd.config import parse_config_dict
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
from matrixd.http.server import JsonResource
from matrixd.rest.client.capabilities import CapabilitiesServlet
from matrixd.rest.client.versions import SUPPORTED_SPEC_VERSIONS, VersionsServlet
from matrixd.rest.client.wellknown import ClientWellKnownServlet, ServerWellKnownServlet
from matrixd.testing.http import FakeAuth, make_reactor, make_request


def _resource(config_overrides: dict[str, Any], auth: FakeAuth) -> JsonResource:
    config = parse_config_dict({"server_name": "test.local", **config_overrides})
    resource = JsonResource()
    VersionsServlet().register(resource)
    ClientWellKnownServlet(config.server).register(resource)
    if config.server.serve_server_wellknown:
        ServerWellKnownServlet(config.server).register(resource)
    CapabilitiesServlet(config.server, config.registration, auth).register(resource)
    return resource


class VersionsTestCase(unittest.TestCase):
    def test_versions_lists_spec_releases(self) -> None:
        """/versions lists r0 releases and every v1.x up to the spec copy's newest, unauthenticated."""
        reactor = make_reactor()
        channel = make_request(reactor, _resource({}, FakeAuth()), "GET", "/_matrix/client/versions")
        self.assertEqual(channel.code, 200, channel.result_body)
        versions = channel.json_body["versions"]
        self.assertEqual(versions, list(SUPPORTED_SPEC_VERSIONS))
        for v in ("r0.6.1", "v1.1", "v1.11", "v1.16", "v1.19"):
            self.assertIn(v, versions)
        self.assertIsInstance(channel.json_body["unstable_features"], dict)
        self.assertTrue(all(isinstance(v, bool) for v in channel.json_body["unstable_features"].values()))

    def test_custom_unstable_features(self) -> None:
        """Unstable features given to the servlet are what it advertises."""
        resource = JsonResource()
        VersionsServlet({"org.example.feature": True}).register(resource)
        channel = make_request(make_reactor(), resource, "GET", "/_matrix/client/versions")
        self.assertEqual(channel.json_body["unstable_features"], {"org.example.feature": True})


class WellKnownTestCase(unittest.TestCase):
    def test_client_wellknown_points_at_public_baseurl(self) -> None:
        """/.well-known/matrix/client gives m.homeserver.base_url from public_baseurl."""
        resource = _resource({"public_baseurl": "https://matrix.test.local"}, FakeAuth())
        channel = make_request(make_reactor(), resource, "GET", "/.well-known/matrix/client")
        self.assertEqual(channel.code, 200)
        self.assertEqual(channel.json_body, {"m.homeserver": {"base_url": "https://matrix.test.local/"}})
        self.assertEqual(channel.headers.getRawHeaders(b"Access-Control-Allow-Origin"), [b"*"])

    def test_server_wellknown_only_when_enabled(self) -> None:
        """/.well-known/matrix/server is served only with serve_server_wellknown."""
        reactor = make_reactor()
        off = _resource({}, FakeAuth())
        self.assertEqual(make_request(reactor, off, "GET", "/.well-known/matrix/server").code, 404)
        on = _resource(
            {"serve_server_wellknown": True, "public_baseurl": "https://matrix.test.local:8448/"}, FakeAuth()
        )
        channel = make_request(reactor, on, "GET", "/.well-known/matrix/server")
        self.assertEqual(channel.json_body, {"m.server": "matrix.test.local:8448"})
        default_port = _resource({"serve_server_wellknown": True}, FakeAuth())
        channel = make_request(reactor, default_port, "GET", "/.well-known/matrix/server")
        self.assertEqual(channel.json_body, {"m.server": "test.local:443"})


class CapabilitiesTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.reactor = make_reactor()
        self.auth = FakeAuth()
        self.auth.add_token("alice_token", "@alice:test.local")
        self.auth.add_token("guest_token", "@123:test.local", is_guest=True)

    def get(self, config: dict[str, Any], token: str | None = "alice_token") -> Any:
        return make_request(
            self.reactor, _resource(config, self.auth), "GET", "/_matrix/client/v3/capabilities", access_token=token
        )

    def test_requires_access_token(self) -> None:
        """Without a token the answer is 401 M_MISSING_TOKEN; a bad token is M_UNKNOWN_TOKEN."""
        channel = self.get({}, token=None)
        self.assertEqual(channel.code, 401)
        self.assertEqual(channel.json_body["errcode"], "M_MISSING_TOKEN")
        channel = self.get({}, token="nope")
        self.assertEqual(channel.code, 401)
        self.assertEqual(channel.json_body["errcode"], "M_UNKNOWN_TOKEN")

    def test_room_versions_default_and_all_stable(self) -> None:
        """m.room_versions lists versions 1-12 as stable with the configured default."""
        channel = self.get({"default_room_version": 10})
        self.assertEqual(channel.code, 200, channel.result_body)
        room_versions = channel.json_body["capabilities"]["m.room_versions"]
        self.assertEqual(room_versions["default"], "10")
        self.assertEqual(room_versions["available"], {str(v): "stable" for v in range(1, 13)})
        self.assertEqual(set(room_versions["available"]), set(KNOWN_ROOM_VERSIONS))

    def test_boolean_capabilities_follow_config(self) -> None:
        """Password, profile and 3pid capabilities reflect the config switches."""
        caps = self.get({}).json_body["capabilities"]
        self.assertEqual(caps["m.change_password"], {"enabled": True})
        self.assertEqual(caps["m.set_displayname"], {"enabled": True})
        self.assertEqual(caps["m.set_avatar_url"], {"enabled": True})
        self.assertEqual(caps["m.profile_fields"], {"enabled": True})
        self.assertEqual(caps["m.3pid_changes"], {"enabled": False})
        self.assertEqual(caps["m.get_login_token"], {"enabled": False})

        caps = self.get(
            {
                "password_config": {"enabled": False},
                "enable_set_displayname": False,
                "enable_set_avatar_url": False,
                "enable_3pid_changes": True,
            }
        ).json_body["capabilities"]
        self.assertEqual(caps["m.change_password"], {"enabled": False})
        self.assertEqual(caps["m.set_displayname"], {"enabled": False})
        self.assertEqual(caps["m.set_avatar_url"], {"enabled": False})
        self.assertEqual(caps["m.profile_fields"], {"enabled": True, "disallowed": ["displayname", "avatar_url"]})
        self.assertEqual(caps["m.3pid_changes"], {"enabled": True})

    def test_guests_may_read_capabilities(self) -> None:
        """Guest access tokens are accepted."""
        self.assertEqual(self.get({}, token="guest_token").code, 200)

    def test_fake_auth_marks_requester_for_access_log(self) -> None:
        """FakeAuth sets request.requester, which the access log reports."""
        with self.assertLogs("matrixd.access", level="INFO") as logs:
            channel = self.get({})
        self.assertEqual(channel.request.requester.user_id, "@alice:test.local")  # type: ignore[union-attr]
        self.assertIn("@alice:test.local", logs.output[0])
