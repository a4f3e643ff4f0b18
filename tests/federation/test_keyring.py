"""The keyring: fetching, checking, caching and expiring other servers' keys; signature checks with them."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.api.errors import SignatureVerifyError
from matrixd.crypto.keyring import Keyring
from matrixd.crypto.keys import encode_verify_key, generate_signing_key, get_verify_key
from matrixd.crypto.server_keys import MAX_KEY_VALIDITY_MS, OldKey
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
from matrixd.testing.federation import FakeRemoteServer
from tests.federation.utils import REMOTE, make_federating_homeserver

DAY_MS = 24 * 3600 * 1000


class KeyringTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(self)
        self.keyring = self.hs.components.federation.keyring

    def key_fetches(self, server: str = REMOTE) -> int:
        return sum(1 for _m, uri in self.network.requests_sent if uri == f"matrix-federation://{server}/_matrix/key/v2/server")

    def lookup(self, keyring: Keyring, server: str, key_ids: list[str], min_valid: int) -> dict[str, Any]:
        result: dict[str, Any] = self.network.run(keyring.get_verify_keys(server, key_ids, min_valid))
        return result

    def now_ms(self) -> int:
        return int(self.hs.reactor.seconds() * 1000)

    # -- caching and validity ------------------------------------------------------

    def test_fetch_then_cache(self) -> None:
        """A key is fetched from its server once, then served from memory."""
        kid = self.remote.key_id
        keys = self.lookup(self.keyring, REMOTE, [kid], self.now_ms())
        self.assertEqual(keys[kid].key_base64, self.remote.verify_key_base64)
        self.assertEqual(keys[kid].valid_until_ts, self.now_ms() + DAY_MS)
        self.lookup(self.keyring, REMOTE, [kid], self.now_ms())
        self.assertEqual(self.key_fetches(), 1)

    def test_keys_persist_in_the_database(self) -> None:
        """A fresh keyring on the same database finds fetched keys without asking the server."""
        kid = self.remote.key_id
        self.lookup(self.keyring, REMOTE, [kid], self.now_ms())
        fed = self.hs.components.federation
        fresh = Keyring(self.hs.components.clock, fed.local_keys, fed.key_store, fed.client)
        self.network.remove_server(REMOTE)
        keys = self.lookup(fresh, REMOTE, [kid], self.now_ms())
        self.assertEqual(keys[kid].key_base64, self.remote.verify_key_base64)
        self.assertEqual(self.key_fetches(), 1)

    def test_expired_key_is_refetched(self) -> None:
        """Past valid_until_ts a lookup for "now" fetches again; one for an earlier time does not."""
        kid = self.remote.key_id
        first_fetch = self.now_ms()
        self.lookup(self.keyring, REMOTE, [kid], first_fetch)
        self.hs.advance(2 * DAY_MS / 1000)
        self.lookup(self.keyring, REMOTE, [kid], first_fetch + 1000)
        self.assertEqual(self.key_fetches(), 1)
        keys = self.lookup(self.keyring, REMOTE, [kid], self.now_ms())
        self.assertEqual(self.key_fetches(), 2)
        self.assertEqual(keys[kid].valid_until_ts, self.now_ms() + DAY_MS)

    def test_validity_capped_at_seven_days(self) -> None:
        """A key response valid for a month is trusted for seven days only."""
        longlived = FakeRemoteServer(self.network, "long.test", key_valid_for_ms=30 * DAY_MS)
        keys = self.lookup(self.keyring, "long.test", [longlived.key_id], self.now_ms())
        self.assertEqual(keys[longlived.key_id].valid_until_ts, self.now_ms() + MAX_KEY_VALIDITY_MS)

    def test_old_verify_keys(self) -> None:
        """An old key verifies signatures made before its expired_ts, not after."""
        old_key = generate_signing_key("old")
        expired = self.now_ms() - 1000
        rotated = FakeRemoteServer(self.network, "rotated.test",
                                   old_keys={"ed25519:old": OldKey(get_verify_key(old_key), expired)})
        keys = self.lookup(self.keyring, "rotated.test", ["ed25519:old"], expired - 5000)
        self.assertEqual(keys["ed25519:old"].valid_until_ts, expired)
        self.assertEqual(self.lookup(self.keyring, "rotated.test", ["ed25519:old"], self.now_ms()), {})
        self.assertIn(rotated.key_id, self.lookup(self.keyring, "rotated.test", [rotated.key_id], self.now_ms()))

    def test_unknown_key_id_is_absent(self) -> None:
        """A key id the server does not publish is simply not returned."""
        self.assertEqual(self.lookup(self.keyring, REMOTE, ["ed25519:nope"], self.now_ms()), {})

    def test_own_keys_need_no_fetch(self) -> None:
        """This server's own key is answered locally."""
        local = self.hs.components.federation.local_keys
        keys = self.lookup(self.keyring, "test", [local.key_id], self.now_ms() + 100 * DAY_MS)
        self.assertEqual(keys[local.key_id].key_base64, encode_verify_key(local.verify_key))
        self.assertEqual(self.network.requests_sent, [])

    def test_invalid_key_response_is_not_stored(self) -> None:
        """A response that is not self-signed gives no keys."""
        liar = FakeRemoteServer(self.network, "liar.test", serve_keys=False)

        async def serve(request: Any) -> tuple[int, Any]:
            return 200, {**liar.key_response(), "signatures": {}}

        liar.handle_raw("GET", "/_matrix/key/v2/server", serve)
        self.assertEqual(self.lookup(self.keyring, "liar.test", [liar.key_id], self.now_ms()), {})

    # -- batching ----------------------------------------------------------------------

    def test_concurrent_lookups_share_a_fetch(self) -> None:
        """Lookups for one server while a fetch is running wait for it, or merge into one follow-up."""
        kid = self.remote.key_id
        now = self.now_ms()
        lookups = [defer.ensureDeferred(self.keyring.get_verify_keys(REMOTE, [kid], now)) for _ in range(5)]
        lookups += [defer.ensureDeferred(self.keyring.get_verify_keys(REMOTE, [f"ed25519:other{i}"], now))
                    for i in range(3)]
        results = self.network.run(defer.gatherResults(lookups))
        self.assertTrue(all(kid in r for r in results[:5]))
        # One fetch for the first batch, one merged follow-up for the other key ids.
        self.assertEqual(self.key_fetches(), 2)

    # -- notaries -----------------------------------------------------------------------

    def _notary_setup(self, configure_keys: bool = True) -> tuple[Any, Any, FakeRemoteServer, FakeRemoteServer]:
        notary_key = generate_signing_key("n1")
        entry: dict[str, Any] = {"server_name": "notary.test"}
        if configure_keys:
            entry["verify_keys"] = {"ed25519:n1": encode_verify_key(get_verify_key(notary_key))}
        hs, network, remote = make_federating_homeserver(self, {"trusted_key_servers": [entry]})
        notary = FakeRemoteServer(network, "notary.test", signing_key=notary_key)
        notary.enable_notary()
        return hs, network, remote, notary

    def test_notary_answers_for_offline_server(self) -> None:
        """When a server is offline, its keys come from a trusted notary that cached them."""
        hs, network, remote, notary = self._notary_setup()
        now = int(hs.reactor.seconds() * 1000)
        network.run(notary.keyring.get_verify_keys(REMOTE, [remote.key_id], now))
        network.remove_server(REMOTE)
        keys = network.run(hs.components.federation.keyring.get_verify_keys(REMOTE, [remote.key_id], now))
        self.assertEqual(keys[remote.key_id].key_base64, remote.verify_key_base64)
        self.assertIn(("POST", "matrix-federation://notary.test/_matrix/key/v2/query"), network.requests_sent)

    def test_notary_signature_must_verify(self) -> None:
        """A notary answer not signed with the configured notary key is ignored."""
        hs, network, remote, notary = self._notary_setup()
        notary.local_keys.signing_key = generate_signing_key("n1")  # signs with a different key now
        now = int(hs.reactor.seconds() * 1000)
        network.run(notary.keyring.get_verify_keys(REMOTE, [remote.key_id], now))
        network.remove_server(REMOTE)
        keys = network.run(hs.components.federation.keyring.get_verify_keys(REMOTE, [remote.key_id], now))
        self.assertEqual(keys, {})

    def test_notary_without_configured_keys(self) -> None:
        """Without configured verify_keys, the notary's own keys are fetched from it directly."""
        hs, network, remote, notary = self._notary_setup(configure_keys=False)
        now = int(hs.reactor.seconds() * 1000)
        network.run(notary.keyring.get_verify_keys(REMOTE, [remote.key_id], now))
        network.remove_server(REMOTE)
        keys = network.run(hs.components.federation.keyring.get_verify_keys(REMOTE, [remote.key_id], now))
        self.assertIn(remote.key_id, keys)
        self.assertIn(("GET", "matrix-federation://notary.test/_matrix/key/v2/server"), network.requests_sent)


class SignatureCheckTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(self)
        self.keyring = self.hs.components.federation.keyring
        self.now = int(self.hs.reactor.seconds() * 1000)

    def verify_json(self, obj: Any, valid_until: int) -> None:
        self.network.run(self.keyring.verify_json_for_server(REMOTE, obj, valid_until))

    def test_verify_json_for_server(self) -> None:
        """A signed object verifies; unsigned, tampered or too-late checks raise 401."""
        obj = self.remote.local_keys.sign({"hello": "world"})
        self.verify_json(obj, self.now)
        with self.assertRaises(SignatureVerifyError):
            self.verify_json({"hello": "world"}, self.now)
        with self.assertRaises(SignatureVerifyError):
            self.verify_json({**obj, "hello": "moon"}, self.now)
        with self.assertRaises(SignatureVerifyError) as cm:
            self.verify_json(obj, self.now + 30 * DAY_MS)
        self.assertEqual(cm.exception.code, 401)

    def _pdu(self, version: str, ts: int) -> dict[str, Any]:
        pdu = {
            "type": "m.room.message",
            "room_id": "!room:remote.test",
            "sender": f"@bob:{REMOTE}",
            "content": {"msgtype": "m.text", "body": "hi"},
            "origin_server_ts": ts,
            "depth": 3,
            "prev_events": [],
            "auth_events": [],
        }
        if version in ("1", "2"):
            pdu["event_id"] = "$abc:remote.test"
            pdu["origin"] = REMOTE
        return self.remote.sign_pdu(KNOWN_ROOM_VERSIONS[version], pdu)

    def check_event(self, version: str, pdu: Any) -> Any:
        return self.network.run(self.keyring.verify_event_signatures(KNOWN_ROOM_VERSIONS[version], pdu))

    def test_event_signature_and_hash(self) -> None:
        """A correctly signed event passes as is; a content change redacts it; a signed-field change rejects it."""
        for version in ("1", "4", "10", "11"):
            pdu = self._pdu(version, self.now)
            self.assertEqual(self.check_event(version, pdu), pdu)
            tampered = {**pdu, "content": {"msgtype": "m.text", "body": "changed"}}
            self.assertEqual(self.check_event(version, tampered)["content"], {})
            with self.assertRaises(SignatureVerifyError):
                self.check_event(version, {**pdu, "type": "m.room.topic"})

    def test_event_unsigned_by_sender_server(self) -> None:
        """An event without its sender server's signature is rejected."""
        pdu = self._pdu("10", self.now)
        pdu["signatures"] = {"elsewhere.test": pdu["signatures"][REMOTE]}
        with self.assertRaises(SignatureVerifyError):
            self.check_event("10", pdu)

    def test_key_validity_enforced_from_v5(self) -> None:
        """From room v5 the key must be valid at origin_server_ts; v4 ignores validity."""
        late = self.now + 30 * DAY_MS
        with self.assertRaises(SignatureVerifyError):
            self.check_event("5", self._pdu("5", late))
        pdu = self._pdu("4", late)
        self.assertEqual(self.check_event("4", pdu), pdu)
