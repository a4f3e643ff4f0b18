"""How a worker applies stream commands: positions, gaps and catch-up, ordering, epochs, reports to the master."""

from __future__ import annotations

from typing import Optional

from matrixd.replication import metrics
from matrixd.replication.commands import PROTOCOL_VERSION
from matrixd.replication.protocol import ConnectionSettings
from matrixd.replication.server import WorkerActivity
from tests.replication.harness import SERVER_NAME, Master, NotesLog, Worker
from tests.replication.test_protocol import ProtocolTestCase, RawPeer, _RawFactory, _sample


class FakeMasterTests(ProtocolTestCase):
    """A hand-driven master, to send what a correct master never would."""

    def connect_to_fake_master(self, worker_position: Optional[int] = None) -> tuple[Worker, RawPeer]:
        fake = _RawFactory(greeting=f"HELLO {PROTOCOL_VERSION} {SERVER_NAME} epoch1 nonce1")
        self.network.server_factory = fake
        worker = Worker(self.reactor, self.network, [self.log])
        if worker_position is not None:
            worker.dispatcher.set_position("notes", worker_position)
        worker.client.start()
        self.addCleanup(worker.client.stop)
        self.network.pump()
        peer = fake.peers[0]
        self.assertEqual(peer.verbs(), ["AUTH"])
        peer.send("WELCOME")
        self.network.pump()
        return worker, peer

    def test_rows_before_position_ignored(self) -> None:
        """RDATA for a stream not yet positioned on this connection is dropped; the POSITION's catch-up covers it."""
        for _ in range(4):
            self.log.write("!r", "old")
        self.log.write("!r", "new")  # token 5
        worker, peer = self.connect_to_fake_master(worker_position=4)
        self.assertEqual(peer.lines[1], "SUBSCRIBE notes 4")
        peer.send('RDATA notes 5 [{"room":"!r","text":"new"}]')
        self.network.pump()
        self.assertEqual(worker.invalidated, [])
        self.assertEqual(worker.dispatcher.position("notes"), 4)
        peer.send("POSITION notes 5 5")
        self.network.pump()
        self.assertEqual(worker.texts(), ["new"])  # once, from the log, not from the early RDATA
        self.assertEqual(self.log.fetches, [(4, 5)])
        self.assertEqual(worker.dispatcher.position("notes"), 5)

    def test_gap_in_position_is_caught_up_from_the_database(self) -> None:
        """POSITION whose prev is beyond the worker's position makes it page the missing rows itself, in order."""
        for i in range(7):
            self.log.write("!r", f"t{i + 1}")
        worker, peer = self.connect_to_fake_master(worker_position=2)
        catchups = _sample(metrics.CATCHUPS, {"stream": "notes"})
        peer.send("POSITION notes 2 2")
        peer.send('RDATA notes 3 [{"room":"!r","text":"t3"}]')
        peer.send("POSITION notes 6 7")  # "you should have everything to 6": 4..6 were missed
        peer.send('RDATA notes 8 [{"room":"!r","text":"t8"}]')
        self.network.pump()
        self.assertEqual(worker.texts(), ["t3", "t4", "t5", "t6", "t7", "t8"])
        self.assertEqual(self.log.fetches, [(3, 7)])
        self.assertEqual(worker.dispatcher.position("notes"), 8)
        self.assertEqual(_sample(metrics.CATCHUPS, {"stream": "notes"}), catchups + 1)

    def test_duplicate_and_stale_rdata_ignored(self) -> None:
        """RDATA at or below the applied position changes nothing."""
        self.log.write("!r", "a")
        worker, peer = self.connect_to_fake_master(worker_position=1)
        peer.send("POSITION notes 1 1")
        peer.send('RDATA notes 2 [{"room":"!r","text":"b"}]')
        peer.send('RDATA notes 2 [{"room":"!r","text":"b again"}]')
        peer.send('RDATA notes 1 [{"room":"!r","text":"a again"}]')
        self.network.pump()
        self.assertEqual(worker.texts(), ["b"])

    def test_undecodable_rows_drop_the_connection(self) -> None:
        """A row that does not fit the row type is not half-applied: the worker disconnects to catch up later."""
        worker, peer = self.connect_to_fake_master(worker_position=0)
        peer.send("POSITION notes 0 0")
        peer.send('RDATA notes 1 [{"room":"!r","text":5}]')
        self.network.pump()
        self.assertEqual(worker.invalidated, [])
        self.assertEqual(worker.dispatcher.position("notes"), 0)
        self.assertEqual(peer.verbs()[-1], "ERROR")
        self.assertTrue(peer.lost)


class LiveStreamTests(ProtocolTestCase):
    def test_position_without_rows_advances_without_fetching(self) -> None:
        """Ids that carry no rows are announced with POSITION; the worker moves without a catch-up."""
        master = self.start_master()
        worker = self.start_worker()
        self.log.write("!r", "a")
        self.log.skip()
        self.log.skip()
        master.publisher.notify("notes")
        self.network.pump()
        self.assertEqual(worker.texts(), ["a"])
        self.assertEqual(worker.dispatcher.position("notes"), 3)
        self.assertEqual(self.log.fetches[-1], (0, 3))  # the master's publishing fetch only
        self.assertEqual(len(self.log.fetches), 1)

    def test_reconnect_catches_up_the_gap_from_the_database(self) -> None:
        """Rows written while the worker was disconnected are paged from the database on reconnect."""
        master = self.start_master()
        worker = self.start_worker()
        self.log.write("!r", "a")
        master.publisher.notify("notes")
        self.network.pump()
        self.network.server_factory = None
        master.server.close_all()
        self.network.pump()
        self.assertFalse(worker.client.connected)
        for text in ["b", "c", "d"]:
            self.log.write("!r", text)
            master.publisher.notify("notes")
        self.network.server_factory = master.server
        self.advance(3)
        self.assertTrue(worker.client.connected)
        self.assertEqual(worker.texts(), ["a", "b", "c", "d"])
        self.assertIn((1, 4), self.log.fetches)

    def test_oversized_rows_are_fetched_from_the_database(self) -> None:
        """Rows too big for one line are announced as POSITION t t and the worker pages them itself."""
        settings = ConnectionSettings(max_line_bytes=1024, max_queued_bytes=4096)
        master = self.start_master(settings=settings)
        worker = self.start_worker()
        big = "y" * 2000
        self.log.write("!r", big)
        self.log.write("!r", "small")
        master.publisher.notify("notes")
        self.network.pump()
        self.assertEqual(worker.texts(), [big, "small"])
        self.assertIn((0, 1), self.log.fetches)

    def test_master_applies_a_page_at_once_and_workers_get_every_token(self) -> None:
        """Many rows of one page: the master wakes its notifier once at the last token; a worker sees each row."""
        master = self.start_master()
        worker = self.start_worker()
        for i in range(5):
            self.log.write("!r", f"m{i}")
        seq_before = master.notifier.current_seq()
        master.publisher.notify("notes")
        self.network.pump()
        self.assertEqual(master.dispatcher.position("notes"), 5)
        self.assertEqual(master.notifier.current_seq(), seq_before + 1)
        self.assertEqual(worker.texts(), [f"m{i}" for i in range(5)])
        self.assertEqual(worker.dispatcher.position("notes"), 5)

    def test_master_without_workers_publishes_locally(self) -> None:
        """With no worker connected the master still applies and advances (no RDATA is built)."""
        master = self.start_master()
        for i in range(3):
            self.log.write("!r", f"m{i}")
        master.publisher.notify("notes")
        self.assertEqual(master.dispatcher.position("notes"), 3)

    def test_invalidation_runs_before_the_wake(self) -> None:
        """The worker invalidates before its notifier sees the new position (never wake before visible)."""
        master = self.start_master()
        worker = self.start_worker()
        seq_before = worker.notifier.current_seq()
        self.log.write("!r", "a")
        master.publisher.notify("notes")
        self.network.pump()
        self.assertEqual(worker.wakes_seen, [("notes", seq_before)])
        self.assertGreater(worker.notifier.current_seq(), seq_before)
        woken = worker.notifier.wait_for_keys(["!r"], seq_before, 10)
        self.assertTrue(self.successResultOf(woken))

    def test_wait_for_stream_position(self) -> None:
        """wait_for_stream_position fires True once the replica reaches it, False at the timeout."""
        master = self.start_master()
        worker = self.start_worker()
        reached = worker.client.wait_for_stream_position("notes", 2, timeout=10)
        never = worker.client.wait_for_stream_position("notes", 50, timeout=10)
        self.assertNoResult(reached)
        self.log.write("!r", "a")
        self.log.write("!r", "b")
        master.publisher.notify("notes")
        self.network.pump()
        self.assertTrue(self.successResultOf(reached))
        self.assertNoResult(never)
        self.reactor.advance(10)
        self.assertFalse(self.successResultOf(never))
        self.assertTrue(self.successResultOf(worker.client.wait_for_stream_position("notes", 1, timeout=0)))

    def test_lag_metric(self) -> None:
        """The lag gauge is master position minus applied position."""
        master = self.start_master()
        worker = self.start_worker()
        self.log.write("!r", "a")
        master.publisher.notify("notes")
        self.network.pump()
        self.assertEqual(_sample(metrics.STREAM_LAG, {"stream": "notes"}), 0)
        self.assertEqual(worker.client.master_position("notes"), 1)


class EpochTests(ProtocolTestCase):
    def test_master_restart_resets_in_memory_streams(self) -> None:
        """A new master epoch resets in-memory streams (state and position); DB streams keep theirs."""
        typing1 = NotesLog("typing")
        master1 = Master(self.reactor, [self.log, typing1], epoch="epochA", in_memory=["typing"])
        self.network.server_factory = master1.server
        typing_worker_log = NotesLog("typing")  # the worker's copy of the source is irrelevant here
        worker = Worker(self.reactor, self.network, [self.log, typing_worker_log], in_memory=["typing"])
        worker.client.start()
        self.addCleanup(worker.client.stop)
        self.network.pump()
        for text in "abc":
            typing1.write("!r", text)
        self.log.write("!r", "note")
        master1.publisher.notify("typing", "notes")
        self.network.pump()
        self.assertEqual(worker.dispatcher.position("typing"), 3)
        self.assertEqual(worker.resets, [])

        # The master restarts: typing starts again from scratch, notes (in the database) continue.
        typing2 = NotesLog("typing")
        typing2.write("!r", "fresh")
        master2 = Master(self.reactor, [self.log, typing2], epoch="epochB", in_memory=["typing"])
        master1.server.close_all()
        self.network.server_factory = master2.server
        self.network.pump()
        self.advance(2)
        self.assertTrue(worker.client.connected)
        self.assertEqual(worker.client.master_epoch, "epochB")
        self.assertEqual(worker.resets, ["typing"])
        self.assertEqual(worker.dispatcher.position("typing"), 1)  # adopted, though lower than 3
        self.assertEqual(worker.dispatcher.position("notes"), 1)
        self.assertEqual(typing_worker_log.fetches, [])  # no catch-up of the old master's typing

        typing2.write("!r", "next")
        master2.publisher.notify("typing")
        self.network.pump()
        self.assertEqual(worker.texts("typing")[-1], "next")

    def test_same_epoch_reconnect_keeps_in_memory_state(self) -> None:
        """Reconnecting to the same master (same epoch) does not reset anything."""
        typing = NotesLog("typing")
        master = Master(self.reactor, [typing], epoch="same", in_memory=["typing"])
        self.network.server_factory = master.server
        worker = Worker(self.reactor, self.network, [typing], in_memory=["typing"])
        worker.client.start()
        self.addCleanup(worker.client.stop)
        self.network.pump()
        master.server.close_all()
        self.network.pump()
        self.advance(2)
        self.assertTrue(worker.client.connected)
        self.assertEqual(worker.resets, [])


class RecordingDevices:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Optional[str], Optional[str]]] = []

    async def record_last_seen(self, user_id: str, device_id: str, ip: Optional[str], ua: Optional[str]) -> None:
        self.calls.append((user_id, device_id, ip, ua))


class WorkerReportTests(ProtocolTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.master = self.start_master()
        self.devices = RecordingDevices()
        self.master.server.receiver = self.master.activity = WorkerActivity(self.devices.record_last_seen)

    def test_user_sync_tracked_and_cleared(self) -> None:
        """USER_SYNC reaches the master; reconnect clears and re-sends; disconnect clears."""
        worker = self.start_worker()
        worker.client.set_user_syncing("@a:test", True)
        worker.client.set_user_syncing("@b:test", True)
        worker.client.set_user_syncing("@b:test", False)
        self.network.pump()
        self.assertEqual(self.master.activity.syncing_users_of("worker1"), {"@a:test"})
        self.master.server.close_all()
        self.network.pump()
        self.assertEqual(self.master.activity.syncing_users(), set())  # worker gone: nobody syncs there
        worker.client.set_user_syncing("@c:test", True)  # while disconnected
        self.advance(2)
        self.assertEqual(self.master.activity.syncing_users_of("worker1"), {"@a:test", "@c:test"})

    def test_user_ip_batched(self) -> None:
        """Client IPs are de-duplicated and sent in USER_IP batches every flush interval."""
        worker = self.start_worker()
        worker.client.record_user_ip("@a:test", "DEV", "10.0.0.1", "ua")
        worker.client.record_user_ip("@a:test", "DEV", "10.0.0.1", "ua")
        worker.client.record_user_ip("@b:test", None, "10.0.0.2", "ua")
        self.network.pump()
        self.assertEqual(self.devices.calls, [])
        self.advance(5)
        self.assertEqual(self.devices.calls, [("@a:test", "DEV", "10.0.0.1", "ua")])

    def test_clear_user_sync_for_another_instance_refused(self) -> None:
        """A worker may only clear its own syncing users."""
        peer = self.raw_client()
        peer.authenticate("w1")
        peer.send("CLEAR_USER_SYNC w2")
        self.network.pump()
        self.assertEqual(peer.verbs()[-1], "ERROR")
        self.assertTrue(peer.lost)

