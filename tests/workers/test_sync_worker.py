"""A sync worker in process: reads through its replica, writes through the master, reads its own writes."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from tests.workers.harness import WorkerPair


def _timeline(body: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    room = body["rooms"]["join"].get(room_id)
    return [] if room is None else room["timeline"]["events"]


class SyncWorkerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.pair = WorkerPair(self)
        self.alice, self.tok = self.pair.hs.create_user("alice")
        ch = self.pair.master_request("POST", "/_matrix/client/v3/createRoom", {}, access_token=self.tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.room = ch.json_body["room_id"]

    def sync(self, since: str | None = None, timeout: int = 0) -> dict[str, Any]:
        path = "/_matrix/client/v3/sync?timeout=%d" % timeout + (f"&since={since}" if since else "")
        ch = self.pair.worker_request("GET", path, access_token=self.tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        body: dict[str, Any] = ch.json_body
        return body

    def test_message_sent_on_master_reaches_worker_sync(self) -> None:
        """An event persisted by the master is in the worker's incremental /sync once replicated."""
        since = self.sync()["next_batch"]
        ch = self.pair.master_request("PUT", f"/_matrix/client/v3/rooms/{self.room}/send/m.room.message/t1",
                                      {"msgtype": "m.text", "body": "hello"}, access_token=self.tok)
        self.assertEqual(ch.code, 200)
        events = _timeline(self.sync(since), self.room)
        self.assertEqual([e["event_id"] for e in events], [ch.json_body["event_id"]])

    def test_long_poll_on_worker_is_woken_by_replication(self) -> None:
        """A waiting /sync on the worker returns when the master's event arrives over replication."""
        since = self.sync()["next_batch"]
        ch = self.pair.worker_request("GET", f"/_matrix/client/v3/sync?timeout=30000&since={since}",
                                      access_token=self.tok, await_result=False)
        self.pair.pump()
        self.assertFalse(ch.is_finished())
        sent = self.pair.master_request("PUT", f"/_matrix/client/v3/rooms/{self.room}/send/m.room.message/t2",
                                        {"msgtype": "m.text", "body": "wake"}, access_token=self.tok)
        self.pair.settle(ch)
        self.assertEqual([e["event_id"] for e in _timeline(ch.json_body, self.room)], [sent.json_body["event_id"]])

    def test_send_through_worker_is_read_back_at_once(self) -> None:
        """PUT /send on the worker goes to the master and the worker's next /sync already has it."""
        since = self.sync()["next_batch"]
        ch = self.pair.worker_request("PUT", f"/_matrix/client/v3/rooms/{self.room}/send/m.room.message/w1",
                                      {"msgtype": "m.text", "body": "via worker"}, access_token=self.tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        event_id = ch.json_body["event_id"]
        # The worker answered only after its replica applied the event: no pumping needed.
        ch2 = self.pair.worker_request("GET", f"/_matrix/client/v3/rooms/{self.room}/event/{event_id}",
                                       access_token=self.tok)
        self.assertEqual(ch2.code, 200, ch2.json_body)
        self.assertEqual(ch2.json_body["content"]["body"], "via worker")
        events = _timeline(self.sync(since), self.room)
        self.assertEqual([e["event_id"] for e in events], [event_id])
        self.assertEqual(events[0]["unsigned"].get("transaction_id"), "w1")

    def test_send_retried_through_worker_is_deduplicated(self) -> None:
        """The same client txn id sent twice through the worker yields one event."""
        path = f"/_matrix/client/v3/rooms/{self.room}/send/m.room.message/dup"
        first = self.pair.worker_request("PUT", path, {"msgtype": "m.text", "body": "x"}, access_token=self.tok)
        second = self.pair.worker_request("PUT", path, {"msgtype": "m.text", "body": "x"}, access_token=self.tok)
        self.assertEqual(first.json_body["event_id"], second.json_body["event_id"])

    def test_master_errors_reach_the_client_unchanged(self) -> None:
        """A send the master refuses (not in the room) is refused by the worker with the same error."""
        _bob, bob_tok = self.pair.hs.create_user("bob")
        ch = self.pair.worker_request("PUT", f"/_matrix/client/v3/rooms/{self.room}/send/m.room.message/b1",
                                      {"msgtype": "m.text", "body": "intruder"}, access_token=bob_tok)
        self.assertEqual(ch.code, 403, ch.json_body)
        self.assertEqual(ch.json_body["errcode"], "M_FORBIDDEN")

    def test_internal_call_retried_after_connection_failure(self) -> None:
        """A failed connection to the master is retried with the same transaction id."""
        self.pair.transport.fail_next = 2
        ch = self.pair.worker_request("PUT", f"/_matrix/client/v3/rooms/{self.room}/send/m.room.message/r1",
                                      {"msgtype": "m.text", "body": "retry"}, access_token=self.tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        uris = [u for m, u in self.pair.transport.requests if m == "POST"]
        self.assertEqual(len(uris), 3)
        self.assertEqual(len(set(uris)), 1)

    def test_typing_through_worker(self) -> None:
        """Typing set on the worker is kept by the master and shows in the worker's /sync."""
        since = self.sync()["next_batch"]
        ch = self.pair.worker_request("PUT", f"/_matrix/client/v3/rooms/{self.room}/typing/{self.alice}",
                                      {"typing": True, "timeout": 10000}, access_token=self.tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(self.pair.hs.components.sync.typing.get_typing_users(self.room), [self.alice])
        ephemeral = self.sync(since)["rooms"]["join"][self.room]["ephemeral"]["events"]
        typing = [e for e in ephemeral if e["type"] == "m.typing"]
        self.assertEqual(typing[0]["content"]["user_ids"], [self.alice])

    def test_receipt_and_account_data_through_worker(self) -> None:
        """Receipts and account data written via the worker are read back from it at once."""
        sent = self.pair.master_request("PUT", f"/_matrix/client/v3/rooms/{self.room}/send/m.room.message/t3",
                                        {"msgtype": "m.text", "body": "read me"}, access_token=self.tok)
        since = self.sync()["next_batch"]
        event_id = sent.json_body["event_id"]
        ch = self.pair.worker_request("POST", f"/_matrix/client/v3/rooms/{self.room}/receipt/m.read/{event_id}",
                                      {}, access_token=self.tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        ch = self.pair.worker_request("PUT", f"/_matrix/client/v3/user/{self.alice}/account_data/org.example.x",
                                      {"a": 1}, access_token=self.tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        ch = self.pair.worker_request("GET", f"/_matrix/client/v3/user/{self.alice}/account_data/org.example.x",
                                      access_token=self.tok)
        self.assertEqual(ch.json_body, {"a": 1})
        body = self.sync(since)
        receipts = [e for e in body["rooms"]["join"][self.room]["ephemeral"]["events"] if e["type"] == "m.receipt"]
        self.assertIn(event_id, receipts[0]["content"])
        self.assertIn("org.example.x", [e["type"] for e in body["account_data"]["events"]])

    def test_presence_set_through_worker(self) -> None:
        """PUT /presence on the worker is stored by the master and read back from the worker."""
        ch = self.pair.worker_request("PUT", f"/_matrix/client/v3/presence/{self.alice}/status",
                                      {"presence": "unavailable", "status_msg": "away"}, access_token=self.tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        ch = self.pair.worker_request("GET", f"/_matrix/client/v3/presence/{self.alice}/status",
                                      access_token=self.tok)
        self.assertEqual((ch.json_body["presence"], ch.json_body.get("status_msg")), ("unavailable", "away"))

    def test_worker_sync_marks_user_syncing_on_master(self) -> None:
        """A /sync on the worker reports USER_SYNC, and brings an offline user online via the master."""
        ch = self.pair.worker_request("GET", "/_matrix/client/v3/sync?timeout=30000", access_token=self.tok,
                                      await_result=False)
        self.pair.settle(ch)
        since = ch.json_body["next_batch"]
        state = self.pair.hs.run(self.pair.hs.components.sync.presence.get_state(self.alice))
        self.assertEqual(state.state, "online")
        long_poll = self.pair.worker_request("GET", f"/_matrix/client/v3/sync?timeout=30000&since={since}",
                                             access_token=self.tok, await_result=False)
        self.pair.pump()
        self.assertIn(self.alice, self.pair.hs.components.replication.activity.syncing_users())
        self.pair.settle(long_poll, timeout=40)
        self.assertNotIn(self.alice, self.pair.hs.components.replication.activity.syncing_users())

    def test_logout_on_master_revokes_token_on_worker(self) -> None:
        """A token deleted on the master stops working on the worker (caches stream invalidation)."""
        self.assertEqual(self.pair.worker_request("GET", "/_matrix/client/v3/joined_rooms",
                                                  access_token=self.tok).code, 200)
        ch = self.pair.master_request("POST", "/_matrix/client/v3/logout", {}, access_token=self.tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        ch = self.pair.worker_request("GET", "/_matrix/client/v3/joined_rooms", access_token=self.tok)
        self.assertEqual(ch.code, 401, ch.json_body)

    def test_writes_without_remote_handler_are_refused(self) -> None:
        """Writes a sync worker does not forward answer 405 or 404; nothing is written locally."""
        ch = self.pair.worker_request("PUT", f"/_matrix/client/v3/rooms/{self.room}/state/m.room.topic/",
                                      {"topic": "x"}, access_token=self.tok)
        self.assertEqual(ch.code, 405)
        ch = self.pair.worker_request("POST", "/_matrix/client/v3/createRoom", {}, access_token=self.tok)
        self.assertIn(ch.code, (404, 405))
        ch = self.pair.worker_request("POST", f"/_matrix/client/v3/user/{self.alice}/filter", {},
                                      access_token=self.tok)
        self.assertIn(ch.code, (404, 405))


class ReadYourWritesTests(unittest.TestCase):
    def test_worker_answers_only_once_its_replica_has_the_write(self) -> None:
        """The worker holds a forwarded send's answer until replication delivers the event to it."""
        pair = WorkerPair(self)
        _alice, tok = pair.hs.create_user("alice")
        room = pair.master_request("POST", "/_matrix/client/v3/createRoom", {}, access_token=tok).json_body["room_id"]
        ch = pair.worker_request("PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/x",
                                 {"msgtype": "m.text", "body": "hi"}, access_token=tok, await_result=False)
        pair.reactor.advance(0)  # the master ran the send (inline database), but no RDATA was delivered
        self.assertFalse(ch.is_finished())
        persisted = pair.hs.components.core.stores.stream_ids.get_current_token()
        self.assertLess(pair.client.dispatcher.position("events") or 0, persisted)
        pair.settle(ch)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertGreaterEqual(pair.client.dispatcher.position("events") or 0, persisted)


class E2EThroughWorkerTests(unittest.TestCase):
    def test_to_device_message_delivered_by_worker_then_acknowledged(self) -> None:
        """A to-device message sent on the master reaches the recipient's /sync on the worker, once."""
        pair = WorkerPair(self)
        alice, alice_tok = pair.hs.create_user("alice", device_id="ALICEDEV")
        bob, bob_tok = pair.hs.create_user("bob", device_id="BOBDEV")
        first = pair.worker_request("GET", "/_matrix/client/v3/sync", access_token=bob_tok)
        since = first.json_body["next_batch"]
        ch = pair.master_request("PUT", "/_matrix/client/v3/sendToDevice/m.test/t1",
                                 {"messages": {bob: {"BOBDEV": {"hello": "bob"}}}}, access_token=alice_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        second = pair.worker_request("GET", f"/_matrix/client/v3/sync?since={since}", access_token=bob_tok)
        events = second.json_body["to_device"]["events"]
        self.assertEqual([(e["sender"], e["type"], e["content"]) for e in events], [(alice, "m.test", {"hello": "bob"})])
        third = pair.worker_request("GET", f"/_matrix/client/v3/sync?since={second.json_body['next_batch']}",
                                    access_token=bob_tok)
        self.assertEqual(third.json_body["to_device"]["events"], [])
        # The acknowledgement went to the master, which deleted the message.
        remaining = pair.hs.run(pair.hs.components.e2e.stores.to_device.get_messages(bob, "BOBDEV", 0, 10**9, 10))
        self.assertEqual(remaining, [])


class TokenFromAheadTests(unittest.TestCase):
    def test_token_ahead_of_replica_waits_for_replication(self) -> None:
        """A since token from the master, ahead of the worker's replica, makes the worker wait for replication."""
        pair = WorkerPair(self)
        alice, tok = pair.hs.create_user("alice")
        room = pair.master_request("POST", "/_matrix/client/v3/createRoom", {}, access_token=tok).json_body["room_id"]
        pair.hs.request("PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/a",
                        {"msgtype": "m.text", "body": "ahead"}, access_token=tok)
        # The master's token already covers the event; the worker has not seen it (nothing pumped).
        master_token = pair.hs.request("GET", "/_matrix/client/v3/sync", access_token=tok).json_body["next_batch"]
        ch = pair.worker_request("GET", f"/_matrix/client/v3/sync?since={master_token}", access_token=tok,
                                 await_result=False)
        pair.reactor.advance(0.1)
        self.assertFalse(ch.is_finished())
        pair.settle(ch)
        self.assertEqual(ch.code, 200, ch.json_body)
        # Nothing after the master's token was missed or repeated.
        self.assertNotIn(room, ch.json_body["rooms"]["join"])
