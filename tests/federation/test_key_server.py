"""The key API we serve: our own signed keys, and other servers' keys as a notary."""

from __future__ import annotations

from typing import Any

import signedjson.key
import signedjson.sign
from twisted.trial import unittest

from matrixd.crypto.keys import decode_verify_key, encode_verify_key, generate_signing_key, get_verify_key
from matrixd.crypto.server_keys import KeyResponseError, parse_key_response
from tests.federation.utils import REMOTE, make_federating_homeserver

DAY_MS = 24 * 3600 * 1000


def verify_signed_by(obj: Any, server: str, key_id: str, key_b64: str) -> None:
    verify_key = signedjson.key.decode_verify_key_base64("ed25519", key_id.split(":", 1)[1], key_b64)
    signedjson.sign.verify_signed_json(obj, server, verify_key)


class LocalKeyServerTestCase(unittest.TestCase):
    def test_key_response_verifies_with_signedjson(self) -> None:
        """/_matrix/key/v2/server lists our key, valid for key_refresh_interval, self-signed."""
        hs, _network, _remote = make_federating_homeserver(self, {"key_refresh_interval": "2h"})
        channel = hs.request("GET", "/_matrix/key/v2/server")
        self.assertEqual(channel.code, 200, channel.result_body)
        body = channel.json_body
        self.assertEqual(body["server_name"], "test")
        self.assertEqual(body["valid_until_ts"], int(hs.reactor.seconds() * 1000) + 2 * 3600 * 1000)
        (key_id, entry), = body["verify_keys"].items()
        self.assertEqual(key_id, hs.components.federation.local_keys.key_id)
        verify_signed_by(body, "test", key_id, entry["key"])
        self.assertEqual(body["old_verify_keys"], {})
        # The deprecated per-key path answers the same.
        self.assertEqual(hs.request("GET", f"/_matrix/key/v2/server/{key_id}").json_body["verify_keys"],
                         body["verify_keys"])

    def test_default_refresh_interval_is_a_day(self) -> None:
        """Without key_refresh_interval, keys are published valid for one day."""
        hs, _network, _remote = make_federating_homeserver(self)
        body = hs.request("GET", "/_matrix/key/v2/server").json_body
        self.assertEqual(body["valid_until_ts"], int(hs.reactor.seconds() * 1000) + DAY_MS)

    def test_old_signing_keys_published(self) -> None:
        """old_signing_keys appear under old_verify_keys with their expired_ts."""
        old = encode_verify_key(get_verify_key(generate_signing_key("old1")))
        hs, _network, _remote = make_federating_homeserver(
            self, {"old_signing_keys": {"ed25519:old1": {"key": old, "expired_ts": 1_600_000_000_000}}})
        body = hs.request("GET", "/_matrix/key/v2/server").json_body
        self.assertEqual(body["old_verify_keys"], {"ed25519:old1": {"key": old, "expired_ts": 1_600_000_000_000}})
        parsed = parse_key_response(body, "test", int(hs.reactor.seconds() * 1000))
        self.assertEqual(parsed["ed25519:old1"].valid_until_ts, 1_600_000_000_000)


class ParseKeyResponseTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.key = generate_signing_key("k1")
        self.now = 1_700_000_000_000

    def response(self, **overrides: Any) -> Any:
        body = {
            "server_name": "a.test",
            "verify_keys": {"ed25519:k1": {"key": encode_verify_key(get_verify_key(self.key))}},
            "old_verify_keys": {},
            "valid_until_ts": self.now + DAY_MS,
        }
        body.update(overrides)
        return signedjson.sign.sign_json(body, "a.test", self.key)

    def test_valid_response(self) -> None:
        """A well-formed self-signed response yields its keys with their validity."""
        keys = parse_key_response(self.response(), "a.test", self.now)
        self.assertEqual(keys["ed25519:k1"].valid_until_ts, self.now + DAY_MS)
        self.assertEqual(keys["ed25519:k1"].verify_key.encode(), get_verify_key(self.key).encode())

    def test_rejections(self) -> None:
        """Wrong server, missing fields, bad signatures and foreign signers are refused."""
        bad = [
            (self.response(), "b.test"),
            ({**self.response(), "valid_until_ts": "soon"}, "a.test"),
            ({**self.response(), "verify_keys": {}}, "a.test"),
            ({**self.response(), "signatures": {}}, "a.test"),
            ({**self.response(), "valid_until_ts": self.now + 2 * DAY_MS}, "a.test"),  # signature no longer matches
            (signedjson.sign.sign_json({k: v for k, v in self.response().items() if k != "signatures"},
                                       "a.test", generate_signing_key("other")), "a.test"),
            (self.response(old_verify_keys={"ed25519:o": {"key": "AAAA"}}), "a.test"),
            ([], "a.test"),
        ]
        for body, server in bad:
            with self.assertRaises(KeyResponseError, msg=repr(body)):
                parse_key_response(body, server, self.now)

    def test_decode_verify_key_roundtrip(self) -> None:
        """Published keys decode back to the same verify key."""
        vk = get_verify_key(self.key)
        self.assertEqual(decode_verify_key("ed25519:k1", encode_verify_key(vk)).encode(), vk.encode())


class NotaryTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(self)
        self.local = self.hs.components.federation.local_keys

    def fetches(self) -> int:
        return sum(1 for _m, uri in self.network.requests_sent if uri.endswith(f"{REMOTE}/_matrix/key/v2/server"))

    def query(self, server: str, suffix: str = "") -> list[Any]:
        channel = self.hs.request("GET", f"/_matrix/key/v2/query/{server}{suffix}")
        self.assertEqual(channel.code, 200, channel.result_body)
        keys: list[Any] = channel.json_body["server_keys"]
        return keys

    def assert_countersigned(self, response: Any) -> None:
        verify_signed_by(response, REMOTE, self.remote.key_id, self.remote.verify_key_base64)
        verify_signed_by(response, "test", self.local.key_id, encode_verify_key(self.local.verify_key))

    def test_query_for_ourselves(self) -> None:
        """Asking the notary about itself returns its own signed response."""
        (response,) = self.query("test")
        self.assertEqual(response["server_name"], "test")
        verify_signed_by(response, "test", self.local.key_id, encode_verify_key(self.local.verify_key))

    def test_query_fetches_and_countersigns(self) -> None:
        """A remote server's keys are fetched, returned with its signature and ours."""
        (response,) = self.query(REMOTE)
        self.assertEqual(response["verify_keys"][self.remote.key_id]["key"], self.remote.verify_key_base64)
        self.assert_countersigned(response)
        self.assertEqual(self.fetches(), 1)

    def test_cached_for_half_the_lifetime(self) -> None:
        """The response is reused for half its lifetime, then refetched."""
        self.query(REMOTE)
        self.hs.advance(11 * 3600)
        self.query(REMOTE)
        self.assertEqual(self.fetches(), 1)
        self.hs.advance(2 * 3600)
        self.query(REMOTE)
        self.assertEqual(self.fetches(), 2)

    def test_minimum_valid_until_forces_refetch(self) -> None:
        """A minimum_valid_until_ts beyond what is cached makes the notary ask again."""
        self.query(REMOTE)
        later = int(self.hs.reactor.seconds() * 1000) + 3 * DAY_MS
        self.query(REMOTE, f"?minimum_valid_until_ts={later}")
        self.assertEqual(self.fetches(), 2)

    def test_offline_server_served_from_cache(self) -> None:
        """When the server is unreachable the last response is still served; with none, nothing is."""
        self.query(REMOTE)
        self.network.remove_server(REMOTE)
        self.hs.advance(3 * DAY_MS / 1000)
        (response,) = self.query(REMOTE)
        self.assert_countersigned(response)
        self.assertEqual(self.query("never.test"), [])

    def test_post_query(self) -> None:
        """POST /query answers several servers at once; unknown key ids get nothing."""
        body = {"server_keys": {
            REMOTE: {self.remote.key_id: {"minimum_valid_until_ts": 0}},
            "test": {},
        }}
        channel = self.hs.request("POST", "/_matrix/key/v2/query", body)
        self.assertEqual(channel.code, 200, channel.result_body)
        by_server = {r["server_name"]: r for r in channel.json_body["server_keys"]}
        self.assertEqual(set(by_server), {REMOTE, "test"})
        self.assert_countersigned(by_server[REMOTE])
        channel = self.hs.request("POST", "/_matrix/key/v2/query",
                                  {"server_keys": {REMOTE: {"ed25519:unknown": {}}}})
        self.assertEqual(channel.json_body, {"server_keys": []})
        self.assertEqual(self.hs.request("POST", "/_matrix/key/v2/query", {"server_keys": {}}).json_body,
                         {"server_keys": []})

    def test_bad_queries(self) -> None:
        """Malformed queries are 400."""
        bodies: tuple[dict[str, Any], ...] = (
            {}, {"server_keys": []}, {"server_keys": {REMOTE: []}},
            {"server_keys": {REMOTE: {"k": {"minimum_valid_until_ts": "x"}}}},
            {"server_keys": {"bad name!": {}}},
        )
        for body in bodies:
            channel = self.hs.request("POST", "/_matrix/key/v2/query", body)
            self.assertEqual(channel.code, 400, body)
        self.assertEqual(self.hs.request("GET", "/_matrix/key/v2/query/bad%20name").code, 400)
        self.assertEqual(self.hs.request("GET", f"/_matrix/key/v2/query/{REMOTE}?minimum_valid_until_ts=x").code,
                         400)
