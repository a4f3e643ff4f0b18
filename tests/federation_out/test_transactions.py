"""Outbound PDUs: transactions, batching, one in flight, backoff and catch-up, restarts."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.federation.sender.backoff import UP
from matrixd.federation.sender.destination import MAX_PDUS_PER_TXN
from matrixd.testing.federation import FakeRemoteServer
from tests.federation_out.utils import (
    REMOTE,
    TransactionRecorder,
    create_room,
    join,
    pump,
    send_event,
    started_homeserver,
)


def message(hs: object, room_id: str, sender: str, body: str) -> str:
    event_id: str = send_event(hs, room_id, sender, "m.room.message",  # type: ignore[arg-type]
                               {"msgtype": "m.text", "body": body})
    return event_id


class TransactionTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = started_homeserver(self)
        self.recorder = TransactionRecorder(self.remote)
        self.alice, _ = self.hs.create_user("alice")
        self.room_id = create_room(self.hs, self.alice, {"preset": "public_chat"})
        join(self.hs, self.room_id, f"@bob:{REMOTE}")
        pump(self.hs)
        self.recorder.transactions.clear()
        self.sender = self.hs.components.federation_out.sender

    def bodies(self) -> list[str]:
        return [p["content"].get("body") for p in self.recorder.pdus() if p["type"] == "m.room.message"]

    def test_local_event_is_sent_to_servers_in_room(self) -> None:
        """A local message reaches the remote server in a signed PUT /send transaction from us."""
        message(self.hs, self.room_id, self.alice, "hi")
        pump(self.hs)
        self.assertEqual(self.bodies(), ["hi"])
        txn = self.recorder.transactions[0]
        self.assertEqual(txn["origin"], "test")
        self.assertIsInstance(txn["origin_server_ts"], int)
        self.assertNotIn("unsigned", txn["pdus"][0])
        self.assertIn("test", txn["pdus"][0]["signatures"])
        self.assertEqual(self.remote.received[-1].origin, "test")

    def test_remote_events_are_not_echoed(self) -> None:
        """Events sent by remote users (persisted here) are not sent back out."""
        message(self.hs, self.room_id, f"@bob:{REMOTE}", "from bob")
        pump(self.hs)
        self.assertEqual(self.bodies(), [])

    def test_batching_and_one_transaction_in_flight(self) -> None:
        """Many events go out in transactions of at most 50 PDUs, one transaction at a time, in order."""
        gate: defer.Deferred[None] = defer.Deferred()
        self.recorder.gate = gate
        for i in range(120):
            message(self.hs, self.room_id, self.alice, f"m{i}")
        pump(self.hs)
        self.assertEqual(self.recorder.in_flight, 1)
        self.recorder.gate = None
        gate.callback(None)
        pump(self.hs, 5)
        self.assertEqual(self.recorder.max_in_flight, 1)
        sizes = [len(t["pdus"]) for t in self.recorder.transactions]
        self.assertTrue(all(s <= MAX_PDUS_PER_TXN for s in sizes), sizes)
        self.assertEqual(self.bodies(), [f"m{i}" for i in range(120)])
        self.assertEqual(len(set(self.recorder.txn_ids)), len(self.recorder.txn_ids))

    def test_failure_backs_off_exponentially(self) -> None:
        """A failing destination is retried after growing intervals stored in the database."""
        self.recorder.fail_with = 500
        message(self.hs, self.room_id, self.alice, "one")
        pump(self.hs)
        store = self.hs.components.federation_out.store
        first = self.hs.run(store.get_retry_state(REMOTE))
        self.assertIsNotNone(first)
        self.assertGreater(first.retry_interval, 0)
        # Nothing is attempted before the interval passes.
        attempts = len(self.remote.received)
        message(self.hs, self.room_id, self.alice, "two")
        pump(self.hs, 1)
        self.assertEqual(len(self.remote.received), attempts)
        pump(self.hs, first.retry_interval / 1000 + 1, step=0.5)
        second = self.hs.run(store.get_retry_state(REMOTE))
        self.assertGreater(len(self.remote.received), attempts)
        self.assertGreater(second.retry_interval, first.retry_interval)
        self.assertEqual(second.failure_ts, first.failure_ts)

    def test_destination_back_up_catches_up_with_latest_event(self) -> None:
        """After an outage the destination gets the newest event of the room, not every missed one."""
        self.network.remove_server(REMOTE)
        message(self.hs, self.room_id, self.alice, "lost-1")
        pump(self.hs)
        for i in range(5):
            message(self.hs, self.room_id, self.alice, f"missed-{i}")
        last = message(self.hs, self.room_id, self.alice, "latest")
        pump(self.hs, 1)
        self.network.add_server(REMOTE, self.remote.site)
        state = self.hs.run(self.hs.components.federation_out.store.get_retry_state(REMOTE))
        pump(self.hs, state.retry_interval / 1000 + 2, step=0.5)
        self.assertEqual(self.bodies(), ["latest"])
        self.assertTrue(last)
        back = self.hs.run(self.hs.components.federation_out.store.get_retry_state(REMOTE))
        self.assertEqual(back.retry_interval, 0)
        # Normal sending resumes.
        message(self.hs, self.room_id, self.alice, "after")
        pump(self.hs)
        self.assertEqual(self.bodies()[-1], "after")

    def test_catch_up_covers_each_room(self) -> None:
        """Catch-up sends the latest event of every room the destination missed events in."""
        other_room = create_room(self.hs, self.alice, {"preset": "public_chat"})
        join(self.hs, other_room, f"@carol:{REMOTE}")
        pump(self.hs)
        self.network.remove_server(REMOTE)
        message(self.hs, self.room_id, self.alice, "a1")
        pump(self.hs)
        message(self.hs, self.room_id, self.alice, "a2")
        message(self.hs, other_room, self.alice, "b1")
        self.network.add_server(REMOTE, self.remote.site)
        self.recorder.transactions.clear()
        pump(self.hs, 60, step=0.5)
        self.assertEqual(sorted(self.bodies()), ["a2", "b1"])

    def test_restart_resumes_from_database(self) -> None:
        """A new sender on the same database catches the destination up on events queued before the restart."""
        self.network.remove_server(REMOTE)
        message(self.hs, self.room_id, self.alice, "before restart")
        pump(self.hs)
        message(self.hs, self.room_id, self.alice, "queued")
        self.sender.stop()
        # A second sender object, as a restarted process would build, on the same stores.
        from matrixd.federation.sender.area import build_federation_out_area

        c = self.hs.components
        area = build_federation_out_area(
            clock=c.clock, db=c.db, server_name="test", client=c.federation.client, notifier=c.core.notifier,
            events=c.core.stores.events, state=c.core.stores.state, event_stream_ids=c.core.stores.stream_ids,
            visibility=c.federation.visibility, device_lists=c.e2e.stores.device_lists,
            device_lists_position=c.e2e.device_lists, e2e_keys=c.e2e.stores.keys, to_device=c.e2e.stores.to_device,
            send_federation=True, e2e=c.e2e, rooms=c.core.stores.rooms, current_state=c.core.stores.current_state,
        )
        self.hs.run(c.federation_out.store.set_retry_state(REMOTE, UP))  # the backoff has passed
        self.network.add_server(REMOTE, self.remote.site)
        self.hs.run(area.sender.start())
        self.addCleanup(area.sender.stop)
        pump(self.hs, 5)
        self.assertEqual(self.bodies(), ["queued"])

    def test_other_server_membership_target_gets_event(self) -> None:
        """A kick is sent to the kicked user's server even though it has no joined user left."""
        other = FakeRemoteServer(self.network, "other.test")
        rec = TransactionRecorder(other)
        join(self.hs, self.room_id, "@dave:other.test")
        pump(self.hs)
        send_event(self.hs, self.room_id, self.alice, "m.room.member", {"membership": "leave"},
                   state_key="@dave:other.test")
        pump(self.hs)
        kinds = [(p["type"], p["content"].get("membership")) for p in rec.pdus()]
        self.assertIn(("m.room.member", "leave"), kinds)

    def test_send_pdu_api(self) -> None:
        """FederationSender.send_pdu queues an event for the named destinations (ignoring ourselves)."""
        event = self.hs.run(self.hs.components.core.stores.events.get_event(
            message(self.hs, self.room_id, f"@bob:{REMOTE}", "relay")))
        other = FakeRemoteServer(self.network, "other.test")
        rec = TransactionRecorder(other)
        self.sender.send_pdu(event, ["other.test", "test"])
        pump(self.hs)
        self.assertEqual([p["content"].get("body") for p in rec.pdus()], ["relay"])


class OutboxTestCase(unittest.TestCase):
    """The master's hand-offs when a federation_sender worker sends: the federation_outbox table and stream."""

    setUp = TransactionTestCase.setUp
    bodies = TransactionTestCase.bodies

    def test_outbox_hand_offs_are_sent_and_drained(self) -> None:
        """send_pdu/send_edu on the outbox sender store rows; the sender queues them, records its position
        and deletes what it queued; nothing is sent twice."""
        from matrixd.federation.sender.outbox import OutboxFederationSender
        from matrixd.federation.sender.service import OUTBOX
        from matrixd.storage.federation_outbox import FederationOutboxStore

        c = self.hs.components
        store = FederationOutboxStore(c.db, c.clock)
        ids = self.hs.run(store.create_id_generator())
        outbox = OutboxFederationSender(server_name="test", store=store, stream_ids=ids,
                                        notify=self.sender.notify_outbox)
        self.sender.set_outbox(store, ids.get_current_token)
        # A remote user's event (never sent by the events stream) handed over explicitly, and an EDU.
        event_id = message(self.hs, self.room_id, f"@bob:{REMOTE}", "handed over")
        event = self.hs.run(c.core.stores.events.get_event(event_id))
        assert event is not None
        outbox.send_pdu(event, [REMOTE, "test"])
        outbox.send_edu(REMOTE, "m.test", {"n": 1}, key="k")
        pump(self.hs)
        self.assertEqual(self.bodies(), ["handed over"])
        edus = [e for t in self.recorder.transactions for e in t.get("edus", []) if e["edu_type"] == "m.test"]
        self.assertEqual([e["content"] for e in edus], [{"n": 1}])
        self.assertEqual(self.hs.run(c.federation_out.store.get_stream_position(OUTBOX)), ids.get_current_token())
        self.assertEqual(self.hs.run(store.get_entries(0, ids.get_current_token(), 10)), [])
        self.sender.notify_outbox()
        pump(self.hs)
        self.assertEqual(self.bodies(), ["handed over"])


class ConfiguredRetryTestCase(unittest.TestCase):
    def test_configured_retry_schedule(self) -> None:
        """federation.destination_* set the first wait and the growth after a destination fails."""
        hs, _, remote = started_homeserver(self, {"federation": {
            "destination_min_retry_interval": "2m", "destination_retry_multiplier": 5,
            "destination_max_retry_interval": "1h"}})
        recorder = TransactionRecorder(remote)
        alice, _ = hs.create_user("alice")
        room_id = create_room(hs, alice, {"preset": "public_chat"})
        join(hs, room_id, f"@bob:{REMOTE}")
        pump(hs)
        recorder.fail_with = 500
        message(hs, room_id, alice, "one")
        pump(hs)
        store = hs.components.federation_out.store
        first = hs.run(store.get_retry_state(REMOTE))
        self.assertTrue(108_000 <= first.retry_interval <= 132_000, first.retry_interval)  # 2 min +-10%
        message(hs, room_id, alice, "two")
        pump(hs, first.retry_interval / 1000 + 1, step=1)
        second = hs.run(store.get_retry_state(REMOTE))
        self.assertTrue(4 * first.retry_interval <= second.retry_interval <= 6 * first.retry_interval,
                        (first.retry_interval, second.retry_interval))
        message(hs, room_id, alice, "three")
        pump(hs, second.retry_interval / 1000 + 1, step=5)
        third = hs.run(store.get_retry_state(REMOTE))
        self.assertLessEqual(third.retry_interval, 3_600_000)
