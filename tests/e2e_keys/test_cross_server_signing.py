"""Cross-signing across servers (regressions found by the nio end-to-end test between two servers):

* a user-signing signature of a remote user's master key is checked against the key the remote
  server has (it used to fail as "could not fetch"), and shown back to the signer only;
* the user's own signatures (self-signing key on a device, a device on the master key) travel in
  ``m.device_list_update`` / ``m.signing_key_update`` (they used to be left out, so other servers'
  caches answered /keys/query without them), and signing one's master key is a cross-signing
  change, not an update of a "device" named after the key (which went out as a deleted device).
"""

from __future__ import annotations

import copy
from typing import Any

import signedjson.sign
from signedjson.key import get_verify_key
from twisted.trial import unittest

from matrixd.http.request import MatrixRequest
from matrixd.http.server import ServletResult
from matrixd.types import JsonDict
from tests.e2e_keys.helpers import CrossSigningKeys, FakeDevice, public_b64
from tests.federation_out.utils import REMOTE, TransactionRecorder, create_room, join, pump, started_homeserver

V3 = "/_matrix/client/v3"
FED = "/_matrix/federation/v1"
BOB = f"@bob:{REMOTE}"


def verifies(obj: JsonDict, user_id: str, key: Any) -> bool:
    """Whether ``obj`` has a valid signature by ``user_id`` with ``key`` (key id ``ed25519:<its version>``)."""
    try:
        signedjson.sign.verify_signed_json(obj, user_id, get_verify_key(key))
    except signedjson.sign.SignatureVerifyException:
        return False
    return True


class CrossServerSigningTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = started_homeserver(self)
        self.recorder = TransactionRecorder(self.remote)
        self.alice, self.token = self.hs.create_user("alice")
        self.room_id = create_room(self.hs, self.alice, {"preset": "public_chat"})
        join(self.hs, self.room_id, BOB)
        pump(self.hs)
        self.dev = FakeDevice(self.alice, "TESTDEVICE", self.token)
        self.client("POST", "/keys/upload", {"device_keys": self.dev.device_keys()})
        self.cs = CrossSigningKeys(self.alice)
        self.client("POST", "/keys/device_signing/upload", self.cs.upload_body())
        pump(self.hs)
        self.recorder.transactions.clear()
        self.bob_keys = CrossSigningKeys(BOB)
        self.bob_master = self.bob_keys.key_json(self.bob_keys.master, "master", signed_by_master=False)

        async def keys_query(origin: str, content: dict[str, Any], request: MatrixRequest) -> ServletResult:
            return 200, {"device_keys": {BOB: {}}, "master_keys": {BOB: self.bob_master}}

        self.remote.handle("POST", f"{FED}/user/keys/query", keys_query)

    def client(self, method: str, path: str, body: Any = None, token: Any = None) -> Any:
        ch = self.hs.request(method, V3 + path, body, access_token=token or self.token, await_result=False)
        pump(self.hs, 3)
        ch.await_result()
        self.assertEqual(ch.code, 200, ch.result_body)
        return ch.json_body

    def test_user_signing_a_remote_master_key(self) -> None:
        """Alice signs a remote user's master key: checked against his server's copy, seen by her alone."""
        bob_master_pub = public_b64(self.bob_keys.master)
        signed = signedjson.sign.sign_json(copy.deepcopy(self.bob_master), self.alice, self.cs.user_signing)
        result = self.client("POST", "/keys/signatures/upload", {BOB: {bob_master_pub: signed}})
        self.assertEqual(result["failures"], {})
        seen = self.client("POST", "/keys/query", {"device_keys": {BOB: []}})["master_keys"][BOB]
        self.assertTrue(verifies(seen, self.alice, self.cs.user_signing), seen)
        _, carol_token = self.hs.create_user("carol")
        seen_by_carol = self.client("POST", "/keys/query", {"device_keys": {BOB: []}}, carol_token)
        self.assertNotIn(self.alice, seen_by_carol["master_keys"][BOB].get("signatures", {}))

        forged = signedjson.sign.sign_json(copy.deepcopy(self.bob_master), self.alice, CrossSigningKeys(self.alice)
                                           .user_signing)
        forged["signatures"][self.alice] = {f"ed25519:{public_b64(self.cs.user_signing)}":
                                            next(iter(forged["signatures"][self.alice].values()))}
        other = self.bob_keys.key_json(self.bob_keys.self_signing, "self_signing")
        failures = self.client("POST", "/keys/signatures/upload", {BOB: {
            bob_master_pub: forged, public_b64(self.bob_keys.self_signing): other,
        }})["failures"][BOB]
        self.assertEqual(failures[bob_master_pub]["errcode"], "M_INVALID_SIGNATURE")
        self.assertEqual(failures[public_b64(self.bob_keys.self_signing)]["errcode"], "M_NOT_FOUND")

    def test_own_signatures_travel_in_device_list_and_signing_key_updates(self) -> None:
        """The self-signing signature of a device and the device's signature of the master key reach
        other servers with the keys; the master key signature is an m.signing_key_update."""
        device = self.dev.device_keys()
        master = self.cs.key_json(self.cs.master, "master", signed_by_master=False)
        master_pub = public_b64(self.cs.master)
        body = {self.alice: {
            "TESTDEVICE": signedjson.sign.sign_json(copy.deepcopy(device), self.alice, self.cs.self_signing),
            master_pub: signedjson.sign.sign_json(copy.deepcopy(master), self.alice, self.dev.signing_key),
        }}
        self.assertEqual(self.client("POST", "/keys/signatures/upload", body)["failures"], {})
        pump(self.hs)
        device_updates = [e["content"] for e in self.recorder.edus("m.device_list_update")]
        self.assertEqual([u["device_id"] for u in device_updates], ["TESTDEVICE"])
        self.assertTrue(verifies(device_updates[0]["keys"], self.alice, self.cs.self_signing))
        self.assertTrue(verifies(device_updates[0]["keys"], self.alice, self.dev.signing_key))
        key_updates = [e["content"] for e in self.recorder.edus("m.signing_key_update")]
        self.assertEqual(len(key_updates), 1)
        sent_master = key_updates[0]["master_key"]
        self.assertTrue(verifies(sent_master, self.alice, self.dev.signing_key), sent_master)
        self.assertTrue(verifies(key_updates[0]["self_signing_key"], self.alice, self.cs.master))
