"""End-to-end encryption in /sync: to-device messages, device list changes, key counts."""

from __future__ import annotations

from typing import Any

from tests.sync.helpers import DEVICE, SyncTestCase


class SyncE2ETests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")

    def send_to_device(self, txn: str, content: dict[str, Any]) -> None:
        channel = self.request("PUT", f"/sendToDevice/m.test/{txn}", self.atok,
                               {"messages": {self.bob: {DEVICE: content}}})
        self.assertEqual(channel.code, 200, channel.json_body)

    def test_to_device_delivered_until_acknowledged(self) -> None:
        """A to-device message arrives in /sync, again on a retry from the same token, and not after."""
        first = self.sync(self.btok, set_presence="offline")
        self.send_to_device("t1", {"n": 1})
        body = self.sync(self.btok, since=first["next_batch"], set_presence="offline")
        self.assertEqual(body["to_device"]["events"], [{"sender": self.alice, "type": "m.test", "content": {"n": 1}}])
        retry = self.sync(self.btok, since=first["next_batch"], set_presence="offline")
        self.assertEqual(len(retry["to_device"]["events"]), 1)
        after = self.sync(self.btok, since=body["next_batch"], set_presence="offline")
        self.assertEqual(after["to_device"]["events"], [])

    def test_to_device_wakes_long_poll(self) -> None:
        """A to-device message ends the recipient's long-poll."""
        first = self.sync(self.btok, set_presence="offline")
        channel = self.request("GET", self.sync_path(first["next_batch"], timeout=20000, set_presence="offline"),
                               self.btok, await_result=False)
        self.hs.advance(1)
        self.assertFalse(channel.is_finished())
        self.send_to_device("t2", {"n": 2})
        channel.await_result()
        self.assertEqual(channel.json_body["to_device"]["events"][0]["content"], {"n": 2})

    def test_device_lists_on_join_and_leave(self) -> None:
        """A user starting to share a room is in device_lists.changed; one who stops, in left."""
        room = self.create_room(self.alice, preset="public_chat")
        first = self.sync(self.atok, set_presence="offline")
        self.join(self.bob, room)
        body = self.sync(self.atok, since=first["next_batch"], set_presence="offline")
        self.assertIn(self.bob, body["device_lists"]["changed"])
        self.membership(self.bob, self.bob, room, "leave")
        body = self.sync(self.atok, since=body["next_batch"], set_presence="offline")
        self.assertIn(self.bob, body["device_lists"]["left"])

    def test_key_counts_present(self) -> None:
        """Every sync carries the device's one-time key counts and unused fallback key types."""
        body = self.sync(self.btok)
        self.assertEqual(body["device_one_time_keys_count"].get("signed_curve25519"), 0)
        self.assertEqual(body["device_unused_fallback_key_types"], [])
