"""Outbound EDUs: typing, receipts, presence, to-device, device list and signing key updates."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.federation.sender.destination import MAX_EDUS_PER_TXN
from tests.e2e_keys.helpers import CrossSigningKeys, FakeDevice, public_b64
from tests.federation_out.utils import REMOTE, TransactionRecorder, create_room, join, pump, started_homeserver

V3 = "/_matrix/client/v3"


class OutboundEduTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = started_homeserver(self)
        self.recorder = TransactionRecorder(self.remote)
        self.alice, self.token = self.hs.create_user("alice")
        self.room_id = create_room(self.hs, self.alice, {"preset": "public_chat"})
        join(self.hs, self.room_id, f"@bob:{REMOTE}")
        pump(self.hs)
        self.recorder.transactions.clear()
        self.sender = self.hs.components.federation_out.sender
        self.e2e = self.hs.components.e2e

    def test_typing(self) -> None:
        """on_local_typing sends an m.typing EDU to the servers in the room."""
        self.hs.run(self.sender.on_local_typing(self.room_id, self.alice, True))
        pump(self.hs)
        self.assertEqual([e["content"] for e in self.recorder.edus("m.typing")],
                         [{"room_id": self.room_id, "user_id": self.alice, "typing": True}])

    def test_receipt(self) -> None:
        """on_local_receipt sends an m.receipt EDU keyed by room, type and user."""
        self.hs.run(self.sender.on_local_receipt(self.room_id, "m.read", self.alice, ["$e"], {"ts": 5}))
        pump(self.hs)
        self.assertEqual(self.recorder.edus("m.receipt")[0]["content"],
                         {self.room_id: {"m.read": {self.alice: {"event_ids": ["$e"], "data": {"ts": 5}}}}})

    def test_presence_latest_state_wins(self) -> None:
        """Presence updates queued while a destination is down collapse to the latest one per user."""
        self.recorder.fail_with = 503
        self.hs.run(self.sender.on_local_presence(self.alice, {"presence": "online"}, [self.room_id]))
        pump(self.hs)
        self.hs.run(self.sender.on_local_presence(self.alice, {"presence": "unavailable"}, [self.room_id]))
        self.recorder.fail_with = None
        pump(self.hs, 60, step=0.5)
        pushes = [e["content"]["push"] for e in self.recorder.edus("m.presence")]
        # (The presence handler may later time alice out: only what was queued while down matters.)
        self.assertEqual(pushes[0], [{"presence": "unavailable", "user_id": self.alice}])
        self.assertNotIn("online", [p[0]["presence"] for p in pushes])

    def test_edu_batch_limit(self) -> None:
        """At most 100 EDUs go in one transaction."""
        for i in range(150):
            self.sender.send_edu(REMOTE, "org.example.test", {"i": i})
        pump(self.hs, 5)
        sizes = [len(t.get("edus", [])) for t in self.recorder.transactions]
        self.assertTrue(all(s <= MAX_EDUS_PER_TXN for s in sizes), sizes)
        self.assertEqual([e["content"]["i"] for e in self.recorder.edus("org.example.test")], list(range(150)))

    def test_to_device_sent_and_outbox_emptied(self) -> None:
        """/sendToDevice for a remote user becomes an m.direct_to_device EDU; the outbox row is deleted on success."""
        body = {"messages": {f"@bob:{REMOTE}": {"BOBDEV": {"secret": 1}}}}
        ch = self.hs.request("PUT", f"{V3}/sendToDevice/m.test/txn1", body, access_token=self.token)
        self.assertEqual(ch.code, 200, ch.result_body)
        pump(self.hs)
        edus = self.recorder.edus("m.direct_to_device")
        self.assertEqual(len(edus), 1)
        self.assertEqual(edus[0]["content"]["sender"], self.alice)
        self.assertEqual(edus[0]["content"]["messages"], body["messages"])
        self.assertEqual(self.hs.run(self.e2e.stores.to_device.get_outbox(REMOTE, 0, 2**62, 10)), [])

    def test_to_device_kept_while_down(self) -> None:
        """A to-device EDU survives a failed transaction and is delivered when the destination returns."""
        self.network.remove_server(REMOTE)
        body = {"messages": {f"@bob:{REMOTE}": {"*": {"n": 1}}}}
        self.hs.request("PUT", f"{V3}/sendToDevice/m.test/txn2", body, access_token=self.token)
        pump(self.hs)
        self.assertEqual(len(self.hs.run(self.e2e.stores.to_device.get_outbox(REMOTE, 0, 2**62, 10))), 1)
        self.network.add_server(REMOTE, self.remote.site)
        pump(self.hs, 60, step=0.5)
        self.assertEqual(len(self.recorder.edus("m.direct_to_device")), 1)

    def test_device_list_updates_with_prev_id(self) -> None:
        """Device changes of a local user become m.device_list_update EDUs chained by prev_id."""
        dev = FakeDevice(self.alice, "TESTDEVICE", self.token)
        ch = self.hs.request("POST", f"{V3}/keys/upload", {"device_keys": dev.device_keys()}, access_token=self.token)
        self.assertEqual(ch.code, 200, ch.result_body)
        pump(self.hs)
        self.hs.run(self.e2e.device_lists.notify_device_change(self.alice, ["GONE"]))
        pump(self.hs)
        updates = [e["content"] for e in self.recorder.edus("m.device_list_update")]
        self.assertEqual([u["device_id"] for u in updates], ["TESTDEVICE", "GONE"])
        self.assertEqual(updates[0]["keys"]["keys"]["ed25519:TESTDEVICE"], dev.ed25519)
        self.assertEqual(updates[1]["prev_id"], [updates[0]["stream_id"]])
        self.assertTrue(updates[1]["deleted"])
        self.assertGreater(updates[1]["stream_id"], updates[0]["stream_id"])

    def test_signing_key_update(self) -> None:
        """A cross-signing key change becomes an m.signing_key_update with master and self-signing keys only."""
        cs = CrossSigningKeys(self.alice)
        master = cs.key_json(cs.master, "master", signed_by_master=False)
        ssk = cs.key_json(cs.self_signing, "self_signing")
        keys = self.e2e.stores.keys
        self.hs.run(self.e2e.device_lists.write_change(self.alice, lambda sid: keys.set_cross_signing_keys(
            self.alice, {"master": (public_b64(cs.master), master), "self_signing": (public_b64(cs.self_signing), ssk)},
            sid)))
        pump(self.hs)
        updates = [e["content"] for e in self.recorder.edus("m.signing_key_update")]
        self.assertEqual(updates, [{"user_id": self.alice, "master_key": master, "self_signing_key": ssk}])

    def test_device_lists_not_sent_to_servers_without_shared_room(self) -> None:
        """Servers that share no room with the user get no device list updates."""
        carol, _ = self.hs.create_user("carol")
        self.hs.run(self.e2e.device_lists.notify_device_change(carol, ["X"]))
        pump(self.hs)
        self.assertEqual(self.recorder.edus("m.device_list_update"), [])


class SyncAreaFeedTestCase(unittest.TestCase):
    """The sync area's typing, receipt and presence changes reach other servers through the stream feed."""

    def setUp(self) -> None:
        self.hs, self.network, self.remote = started_homeserver(self)
        self.recorder = TransactionRecorder(self.remote)
        self.alice, self.token = self.hs.create_user("alice")
        self.room_id = create_room(self.hs, self.alice, {"preset": "public_chat"})
        join(self.hs, self.room_id, f"@bob:{REMOTE}")
        pump(self.hs)
        self.recorder.transactions.clear()

    def req(self, method: str, path: str, body: object) -> None:
        ch = self.hs.request(method, V3 + path, body, access_token=self.token)
        self.assertEqual(ch.code, 200, ch.result_body)

    def test_typing_start_and_stop(self) -> None:
        """PUT /typing true then false sends m.typing started and stopped."""
        path = f"/rooms/{self.room_id}/typing/{self.alice}"
        self.req("PUT", path, {"typing": True, "timeout": 10000})
        pump(self.hs)
        self.req("PUT", path, {"typing": False})
        pump(self.hs)
        self.assertEqual([e["content"]["typing"] for e in self.recorder.edus("m.typing")], [True, False])

    def test_typing_stop_queued_while_start_in_flight_is_sent(self) -> None:
        """The stop replaces the queued start's entry while the start is in flight: both still go out."""
        gate: defer.Deferred[None] = defer.Deferred()
        self.recorder.gate = gate
        path = f"/rooms/{self.room_id}/typing/{self.alice}"
        self.req("PUT", path, {"typing": True, "timeout": 10000})
        pump(self.hs)
        self.assertEqual(self.recorder.in_flight, 1)
        self.req("PUT", path, {"typing": False})
        pump(self.hs)
        self.recorder.gate = None
        gate.callback(None)
        pump(self.hs)
        self.assertEqual([e["content"]["typing"] for e in self.recorder.edus("m.typing")], [True, False])

    def test_public_receipt_sent_private_not(self) -> None:
        """m.read receipts go out; m.read.private ones never do."""
        event_id = self.hs.run(self.hs.components.core.stores.events.get_latest_event_ids_in_room(self.room_id))[0]
        self.req("POST", f"/rooms/{self.room_id}/receipt/m.read.private/{event_id}", {})
        self.req("POST", f"/rooms/{self.room_id}/receipt/m.read/{event_id}", {})
        pump(self.hs)
        receipts = [e["content"] for e in self.recorder.edus("m.receipt")]
        self.assertEqual(len(receipts), 1)
        self.assertEqual(receipts[0][self.room_id]["m.read"][self.alice]["event_ids"], [event_id])

    def test_presence_status(self) -> None:
        """PUT /presence/{userId}/status sends the new state to servers sharing a room."""
        self.req("PUT", f"/presence/{self.alice}/status", {"presence": "unavailable", "status_msg": "away"})
        pump(self.hs)
        pushes = [p for e in self.recorder.edus("m.presence") for p in e["content"]["push"]]
        self.assertEqual(pushes[0]["presence"], "unavailable")
        self.assertEqual(pushes[0]["status_msg"], "away")
        self.assertEqual(pushes[0]["user_id"], self.alice)
