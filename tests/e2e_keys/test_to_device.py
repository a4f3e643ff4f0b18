"""PUT /sendToDevice: inbox delivery, wildcard, txn idempotency, limits, the remote outbox,
and the sync-facing get/ack with notifier wake-ups."""

from __future__ import annotations

from matrixd.streams.token import StreamName
from tests.e2e_keys.helpers import E2ETestCase


class ToDeviceTests(E2ETestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.make_device("alice", "ADEV")
        self.bob1 = self.make_device("bob", "B1")
        self.bob2 = self.make_device("bob", "B2")
        self.src = self.e2e.sync_source

    def send(self, txn: str, messages: object, token: str | None = None, expect: int = 200,
             event_type: str = "m.test") -> None:
        self.put(f"/sendToDevice/{event_type}/{txn}", {"messages": messages}, token or self.alice.token, expect)

    def inbox(self, device: str, since: int = 0) -> tuple[list[dict], int]:  # type: ignore[type-arg]
        result: tuple[list[dict], int] = self.hs.run(  # type: ignore[type-arg]
            self.src.get_to_device_messages(self.bob1.user_id, device, since, 100))
        return result

    def test_delivery_to_one_device(self) -> None:
        """A message reaches only the named device, with sender and type, and advances the stream."""
        before = self.src.current_to_device_position()
        self.send("t1", {self.bob1.user_id: {"B1": {"hello": "world"}}})
        events, pos = self.inbox("B1")
        self.assertEqual(events, [{"sender": self.alice.user_id, "type": "m.test", "content": {"hello": "world"}}])
        self.assertGreater(pos, before)
        self.assertEqual(self.src.current_to_device_position(), pos)
        self.assertEqual(self.inbox("B2")[0], [])

    def test_wildcard_reaches_every_device(self) -> None:
        """``*`` sends to every device of the user; unknown device ids are dropped."""
        self.send("t1", {self.bob1.user_id: {"*": {"n": 1}, "NOPE": {"n": 2}}})
        self.assertEqual([e["content"] for e in self.inbox("B1")[0]], [{"n": 1}])
        self.assertEqual([e["content"] for e in self.inbox("B2")[0]], [{"n": 1}])
        self.assertEqual(self.inbox("NOPE")[0], [])

    def test_txn_id_idempotent_per_device(self) -> None:
        """Repeating a txn id from the same device sends nothing; another device may reuse it."""
        self.send("same", {self.bob1.user_id: {"B1": {"n": 1}}})
        self.send("same", {self.bob1.user_id: {"B1": {"n": 2}}})
        self.assertEqual([e["content"] for e in self.inbox("B1")[0]], [{"n": 1}])
        other = self.make_device("alice", "ADEV2")
        self.send("same", {self.bob1.user_id: {"B1": {"n": 3}}}, token=other.token)
        self.assertEqual([e["content"] for e in self.inbox("B1")[0]], [{"n": 1}, {"n": 3}])

    def test_ack_deletes_only_acknowledged(self) -> None:
        """Messages stay until acknowledged with a later position; ack removes only those up to it."""
        self.send("t1", {self.bob1.user_id: {"B1": {"n": 1}}})
        events, pos1 = self.inbox("B1")
        self.send("t2", {self.bob1.user_id: {"B1": {"n": 2}}})
        self.assertEqual(len(self.inbox("B1")[0]), 2)  # not yet acknowledged
        self.hs.run(self.src.ack_to_device(self.bob1.user_id, "B1", pos1))
        events, _ = self.inbox("B1")
        self.assertEqual([e["content"] for e in events], [{"n": 2}])
        events, pos = self.inbox("B1", since=pos1)
        self.assertEqual([e["content"] for e in events], [{"n": 2}])

    def test_limit_pages_in_order(self) -> None:
        """With a limit the next position is the last delivered message, so nothing is skipped."""
        for i in range(5):
            self.send(f"t{i}", {self.bob1.user_id: {"B1": {"n": i}}})
        got = []
        since = 0
        for _ in range(3):
            events, since = self.hs.run(self.src.get_to_device_messages(self.bob1.user_id, "B1", since, 2))
            got.extend(e["content"]["n"] for e in events)
        self.assertEqual(got, [0, 1, 2, 3, 4])
        self.assertEqual(since, self.src.current_to_device_position())

    def test_notifier_woken_with_recipient(self) -> None:
        """A waiter on the recipient's user id is woken; the stream position is announced."""
        notifier = self.hs.components.core.notifier
        d = notifier.wait_for_keys([self.bob1.user_id], notifier.current_seq(), 30)
        other = notifier.wait_for_keys(["@carol:test"], notifier.current_seq(), 30)
        self.send("t1", {self.bob1.user_id: {"B1": {"n": 1}}})
        self.assertTrue(self.successResultOf(d))
        self.assertFalse(other.called)
        self.assertEqual(notifier.current_token.get(StreamName.TO_DEVICE), self.src.current_to_device_position())
        self.hs.advance(31)
        self.assertFalse(self.successResultOf(other))

    def test_remote_recipients_queued_in_outbox(self) -> None:
        """Messages for users on other servers become one EDU per destination in the outbox."""
        self.send("t1", {"@x:remote.example": {"D1": {"a": 1}}, "@y:remote.example": {"*": {"b": 2}},
                         "@z:other.example": {"D": {"c": 3}}, self.bob1.user_id: {"B1": {"d": 4}}},
                  event_type="m.room_key_request")
        store = self.e2e.stores.to_device
        self.assertEqual(self.hs.run(store.get_outbox_destinations()), ["other.example", "remote.example"])
        pos = self.src.current_to_device_position()
        (entry,) = self.hs.run(store.get_outbox("remote.example", 0, pos, 10))
        self.assertEqual(entry.edu["sender"], self.alice.user_id)
        self.assertEqual(entry.edu["type"], "m.room_key_request")
        self.assertEqual(entry.edu["messages"], {"@x:remote.example": {"D1": {"a": 1}},
                                                 "@y:remote.example": {"*": {"b": 2}}})
        self.assertTrue(entry.edu["message_id"])
        self.assertEqual(self.hs.run(store.delete_outbox("remote.example", pos)), 1)
        self.assertEqual(self.hs.run(store.get_outbox_destinations()), ["other.example"])

    def test_bad_requests(self) -> None:
        """Malformed bodies are 400 and oversize messages 413, and nothing is sent."""
        for messages in ("x", {"notauser": {}}, {self.bob1.user_id: "x"}, {self.bob1.user_id: {"B1": "x"}}):
            self.send("bad", messages, expect=400)
        self.put("/sendToDevice/m.test/bad", {}, self.alice.token, 400)
        self.send("big", {self.bob1.user_id: {"B1": {"x": "y" * 70_000}}}, expect=413)
        self.assertEqual(self.inbox("B1")[0], [])
        # A refused request did not burn the txn id.
        self.send("big", {self.bob1.user_id: {"B1": {"x": 1}}})
        self.assertEqual(len(self.inbox("B1")[0]), 1)

    def test_deleted_device_inbox_dropped(self) -> None:
        """Deleting a device drops its pending messages."""
        self.send("t1", {self.bob1.user_id: {"*": {"n": 1}}})
        self.hs.run(self.e2e.device_lists.on_devices_deleted(self.bob1.user_id, ["B1"]))
        self.assertEqual(self.inbox("B1")[0], [])
        self.assertEqual(len(self.inbox("B2")[0]), 1)

    def test_stream_position_survives_acks_and_restart(self) -> None:
        """After every message is acked, a rebuilt id generator still resumes above the last id."""
        from matrixd.storage.to_device import create_to_device_id_generator

        self.send("t1", {self.bob1.user_id: {"B1": {"n": 1}}})
        _, pos = self.inbox("B1")
        self.hs.run(self.src.ack_to_device(self.bob1.user_id, "B1", pos))
        gen = self.hs.run(create_to_device_id_generator(self.hs.components.db))
        self.assertEqual(gen.get_current_token(), pos)
