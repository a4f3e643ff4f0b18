"""Interoperability with a real client crypto stack: matrix-nio's Olm machine (vodozemac) uploads
its keys, queries and claims the other device's keys (verifying their signatures), and decrypts an
Olm-encrypted to-device message delivered through our inbox."""

from __future__ import annotations

from typing import Any

from nio import KeysClaimResponse, KeysQueryResponse, KeysUploadResponse
from nio.crypto import Olm
from nio.events import RoomKeyEvent, ToDeviceEvent
from nio.store import SqliteMemoryStore

from tests.e2e_keys.helpers import E2ETestCase


class NioInteropTests(E2ETestCase):
    def olm(self, user_id: str, device_id: str) -> Any:
        return Olm(user_id, device_id, SqliteMemoryStore(user_id, device_id))

    def test_olm_session_over_our_endpoints(self) -> None:
        """nio uploads, queries, claims, encrypts to a device and the recipient decrypts it."""
        alice = self.make_device("alice", "ADEV")
        bob = self.make_device("bob", "BDEV")
        alice_olm = self.olm(alice.user_id, "ADEV")
        bob_olm = self.olm(bob.user_id, "BDEV")

        for dev, machine in ((alice, alice_olm), (bob, bob_olm)):
            body = self.post("/keys/upload", machine.share_keys(), dev.token).json_body
            response = KeysUploadResponse.from_dict(body)
            self.assertIsInstance(response, KeysUploadResponse)
            self.assertGreater(response.signed_curve25519_count, 0)
            machine.handle_response(response)
        uploaded = alice_olm.uploaded_key_count

        query = self.post("/keys/query", {"device_keys": {alice.user_id: []}}, bob.token).json_body
        response = KeysQueryResponse.from_dict(query)
        self.assertIsInstance(response, KeysQueryResponse)
        bob_olm.handle_response(response)
        # nio only keeps devices whose self-signature it verified.
        alice_device = bob_olm.device_store[alice.user_id]["ADEV"]
        self.assertEqual(alice_device.ed25519, alice_olm.account.identity_keys["ed25519"])

        claim = self.post("/keys/claim", {"one_time_keys": {alice.user_id: {"ADEV": "signed_curve25519"}}},
                          bob.token).json_body
        claim_response = KeysClaimResponse.from_dict(claim)
        self.assertIsInstance(claim_response, KeysClaimResponse)
        bob_olm.handle_response(claim_response)
        session = bob_olm.session_store.get(alice_device.curve25519)
        self.assertIsNotNone(session, "nio refused the claimed one-time key")
        counts = self.hs.run(self.e2e.sync_source.get_one_time_key_counts(alice.user_id, "ADEV"))
        self.assertEqual(counts["signed_curve25519"], uploaded - 1)

        # Share a megolm room key with Alice over Olm, as a client does before sending to a room.
        bob_olm.create_outbound_group_session("!room:test")
        group = bob_olm.outbound_group_sessions["!room:test"]
        room_key = {"algorithm": "m.megolm.v1.aes-sha2", "room_id": "!room:test", "session_id": group.id,
                    "session_key": group.session_key}
        content = bob_olm._olm_encrypt(session, alice_device, "m.room_key", room_key)
        self.put("/sendToDevice/m.room.encrypted/txn1", {"messages": {alice.user_id: {"ADEV": content}}},
                 bob.token)
        events, _ = self.hs.run(self.e2e.sync_source.get_to_device_messages(alice.user_id, "ADEV", 0, 100))
        self.assertEqual(len(events), 1)
        # nio needs its own keys to recognise the sender's device.
        alice_olm.handle_response(KeysQueryResponse.from_dict(
            self.post("/keys/query", {"device_keys": {bob.user_id: []}}, alice.token).json_body))
        decrypted = alice_olm.decrypt_event(ToDeviceEvent.parse_event(events[0]))
        self.assertIsInstance(decrypted, RoomKeyEvent)
        self.assertEqual(decrypted.session_id, group.id)
        self.assertEqual(decrypted.sender, bob.user_id)
