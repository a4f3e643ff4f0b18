"""X-Matrix authentication of inbound federation requests, through the in-process homeserver."""

from __future__ import annotations

import urllib.parse

from twisted.trial import unittest

from matrixd.crypto.keys import generate_signing_key
from matrixd.crypto.request_auth import XMatrixCredentials, format_x_matrix_header, sign_request
from matrixd.testing.federation import FakeRemoteServer
from tests.federation.utils import REMOTE, make_federating_homeserver

PROFILE = "/_matrix/federation/v1/query/profile?user_id=" + urllib.parse.quote("@alice:test", safe="")


class InboundAuthTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(self)
        self.hs.create_user("alice")

    def assert_unauthorized(self, channel: object, fragment: str = "") -> None:
        code = channel.code  # type: ignore[attr-defined]
        body = channel.json_body  # type: ignore[attr-defined]
        self.assertEqual((code, body["errcode"]), (401, "M_UNAUTHORIZED"), body)
        self.assertIn(fragment, body["error"])

    def test_signed_request_is_accepted(self) -> None:
        """A correctly signed request is served; the keyring fetched the origin's key over federation."""
        channel = self.remote.request(self.hs, "GET", PROFILE)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertIn(("GET", "matrix-federation://remote.test/_matrix/key/v2/server"), self.network.requests_sent)

    def test_key_is_fetched_once(self) -> None:
        """Later requests from the same server verify with the cached key: no second key fetch."""
        for _ in range(3):
            self.assertEqual(self.remote.request(self.hs, "GET", PROFILE).code, 200)
        key_fetches = [r for r in self.network.requests_sent if r[1].endswith("/_matrix/key/v2/server")]
        self.assertEqual(len(key_fetches), 1)

    def test_missing_header(self) -> None:
        """No Authorization header (or a Bearer one) is 401 M_UNAUTHORIZED."""
        self.assert_unauthorized(self.hs.request("GET", PROFILE), "Missing")
        self.assert_unauthorized(self.hs.request("GET", PROFILE, access_token="abc"), "Missing")

    def test_malformed_headers(self) -> None:
        """Headers that break the X-Matrix grammar are 401."""
        good = self.remote.authorization("GET", "test", PROFILE).decode()
        for header in (
            "X-Matrix",
            "X-Matrix origin=remote.test",
            'X-Matrix origin="remote.test,key="ed25519:x",sig="abc"',
            'X-Matrix origin="remote.test",origin="remote.test",key="ed25519:x",sig="abc"',
            good.replace("X-Matrix ", "X-Matrix\t"),
            good + ",junk",
            good.replace(",key=", ";key="),
        ):
            channel = self.remote.request(self.hs, "GET", PROFILE, authorization=header.encode())
            self.assert_unauthorized(channel, "Malformed")

    def test_tolerated_header_forms(self) -> None:
        """Case-insensitive scheme and names, spaces around commas and '=', unquoted tokens are accepted."""
        header = self.remote.authorization("GET", "test", PROFILE).decode()
        params = dict(p.split("=", 1) for p in header[len("X-Matrix "):].split(","))
        variants = [
            "x-matrix  " + " , ".join(f"{k.upper()} = {v}" for k, v in reversed(list(params.items()))),
            "X-Matrix " + ",".join(f"{k}={v.strip(chr(34))}" if k != "sig" else f"{k}={v}"
                                   for k, v in params.items()),
            "X-Matrix " + ",".join(f"{k}={v}" for k, v in params.items()) + ',extra="ignored"',
        ]
        for variant in variants:
            channel = self.remote.request(self.hs, "GET", PROFILE, authorization=variant.encode())
            self.assertEqual(channel.code, 200, (variant, channel.result_body))

    def test_wrong_destination(self) -> None:
        """A request addressed (and signed) for another server is 401."""
        channel = self.remote.request(self.hs, "GET", PROFILE, destination="elsewhere.test")
        self.assert_unauthorized(channel, "not for test")

    def test_missing_destination_is_accepted(self) -> None:
        """Pre-v1.3 senders omit destination; the signature still covers our name."""
        signed = self.remote.authorization("GET", "test", PROFILE).decode()
        sig = signed.split('sig="')[1].rstrip('"')
        header = format_x_matrix_header(XMatrixCredentials(origin=REMOTE, key=self.remote.key_id, sig=sig))
        channel = self.remote.request(self.hs, "GET", PROFILE, authorization=header)
        self.assertEqual(channel.code, 200, channel.result_body)

    def test_forged_signature(self) -> None:
        """A signature by a key the origin does not publish under that id is 401."""
        forger = generate_signing_key(self.remote.signing_key.version)
        header = sign_request(forger, REMOTE, "test", "GET", PROFILE)
        self.assert_unauthorized(self.remote.request(self.hs, "GET", PROFILE, authorization=header),
                                 "Invalid signature")

    def test_signature_over_other_uri_or_method(self) -> None:
        """The signature covers method and URI: replaying it elsewhere is 401."""
        header = self.remote.authorization("GET", "test", PROFILE + "&field=displayname")
        self.assert_unauthorized(self.remote.request(self.hs, "GET", PROFILE, authorization=header))
        header = self.remote.authorization("POST", "test", PROFILE)
        self.assert_unauthorized(self.remote.request(self.hs, "GET", PROFILE, authorization=header))

    def test_signature_covers_body(self) -> None:
        """A POST whose body differs from the signed content is 401."""
        path = "/_matrix/federation/v1/get_missing_events/%21r%3Atest"
        header = self.remote.authorization("POST", "test", path, {"earliest_events": [], "latest_events": []})
        channel = self.remote.request(self.hs, "POST", path, {"earliest_events": [], "latest_events": ["$x"]},
                                      authorization=header)
        self.assert_unauthorized(channel)

    def test_unknown_key(self) -> None:
        """A key id the origin does not publish is 401."""
        other_key = generate_signing_key("unpublished")
        header = sign_request(other_key, REMOTE, "test", "GET", PROFILE)
        self.assert_unauthorized(self.remote.request(self.hs, "GET", PROFILE, authorization=header), "No key")

    def test_unreachable_origin(self) -> None:
        """A request claiming an origin whose keys cannot be fetched is 401."""
        ghost = FakeRemoteServer(self.network, "ghost.test")
        self.network.remove_server("ghost.test")
        channel = ghost.request(self.hs, "GET", PROFILE)
        self.assert_unauthorized(channel, "No key")

    def test_invalid_origin(self) -> None:
        """An origin that is not a server name is 401."""
        header = sign_request(self.remote.signing_key, "not a server", "test", "GET", PROFILE)
        self.assert_unauthorized(self.remote.request(self.hs, "GET", PROFILE, authorization=header))

    def test_domain_whitelist(self) -> None:
        """With federation_domain_whitelist set, other origins are 403 M_FORBIDDEN."""
        hs, network, remote = make_federating_homeserver(self, {"federation_domain_whitelist": ["friend.test"]})
        channel = remote.request(hs, "GET", PROFILE)
        self.assertEqual((channel.code, channel.json_body["errcode"]), (403, "M_FORBIDDEN"))
        friend = FakeRemoteServer(network, "friend.test")
        hs.create_user("alice")
        self.assertEqual(friend.request(hs, "GET", PROFILE).code, 200)
