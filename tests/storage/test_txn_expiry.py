"""Expiring transaction ids: bounded, oldest-first deletes on each store, and the periodic cleanup."""

from __future__ import annotations

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from matrixd.federation.inbound.txn_store import ReceivedTransactionStore
from matrixd.handlers.txn_expiry import DAY_MS, TransactionIdExpiry, TxnIdTable
from matrixd.storage.database import Database
from matrixd.storage.to_device import ToDeviceStore
from matrixd.storage.txn_ids import TxnIdStore
from matrixd.testing.database import make_test_database
from matrixd.util.clock import Clock

ALICE = "@alice:test.local"


class TxnIdExpiryStorageTests(TestCase):
    async def setUp(self) -> None:
        self.db: Database = await make_test_database(self, reactor)
        self.reactor = task.Clock()  # timestamps only: the database runs on the real reactor
        self.reactor.advance(1_700_000_000)
        self.clock = Clock(self.reactor)
        self.txn_ids = TxnIdStore(self.db, self.clock)
        self.to_device = ToDeviceStore(self.db, self.clock)
        self.received = ReceivedTransactionStore(self.db, self.clock)

    async def count(self, table: str) -> int:
        rows = await self.db.execute("count", f"SELECT COUNT(*) FROM {table}")
        return int(rows[0][0])

    async def test_event_txn_ids_expire_oldest_first_in_bounded_batches(self) -> None:
        """expire_before deletes at most ``limit`` rows older than the cut-off, oldest first, never newer ones."""
        for i in range(5):
            await self.txn_ids.store_txn(ALICE, "DEV", f"old{i}", "!r:test.local", f"$old{i}")
            self.reactor.advance(1)
        cutoff = self.clock.time_msec()
        await self.txn_ids.store_txn(ALICE, "DEV", "new", "!r:test.local", "$new")
        self.assertEqual(await self.txn_ids.expire_before(cutoff, 2), 2)
        self.assertIsNone(await self.txn_ids.get_event_id_for_txn(ALICE, "DEV", "old0"))
        self.assertIsNone(await self.txn_ids.get_event_id_for_txn(ALICE, "DEV", "old1"))
        self.assertEqual(await self.txn_ids.get_event_id_for_txn(ALICE, "DEV", "old2"), "$old2")
        self.assertEqual(await self.txn_ids.expire_before(cutoff, 2), 2)
        self.assertEqual(await self.txn_ids.expire_before(cutoff, 2), 1)
        self.assertEqual(await self.txn_ids.expire_before(cutoff, 2), 0)
        self.assertEqual(await self.txn_ids.get_event_id_for_txn(ALICE, "DEV", "new"), "$new")
        self.assertEqual(await self.count("event_txn_ids"), 1)

    async def test_to_device_and_federation_txn_ids_expire(self) -> None:
        """The to-device and inbound federation stores expire the same way; an expired id may be used again."""
        self.assertTrue(await self.to_device.add_messages(ALICE, "DEV", "t1", 1, [], {}))
        await self.received.set_response("remote.test", "f1", {"pdus": {}})
        self.reactor.advance(10)
        self.assertTrue(await self.to_device.add_messages(ALICE, "DEV", "t2", 2, [], {}))
        await self.received.set_response("remote.test", "f2", {"pdus": {}})
        cutoff = self.clock.time_msec()
        self.assertEqual(await self.to_device.expire_txn_ids(cutoff, 10), 1)
        self.assertEqual(await self.received.expire_before(cutoff, 10), 1)
        self.assertTrue(await self.to_device.add_messages(ALICE, "DEV", "t1", 3, [], {}))
        self.assertFalse(await self.to_device.add_messages(ALICE, "DEV", "t2", 4, [], {}))
        self.assertIsNone(await self.received.get_response("remote.test", "f1"))
        self.assertEqual(await self.received.get_response("remote.test", "f2"), {"pdus": {}})

    async def test_cleanup_run_is_bounded_and_resumes(self) -> None:
        """One run deletes at most batch_size * max_batches rows per table; the next run goes on."""
        for i in range(7):
            await self.txn_ids.store_txn(ALICE, "DEV", f"t{i}", "!r:test.local", f"$e{i}")
        await self.received.set_response("remote.test", "f", {})
        expiry = TransactionIdExpiry(self.clock, [
            TxnIdTable("event_txn_ids", self.txn_ids.expire_before),
            TxnIdTable("received_transactions", self.received.expire_before),
        ], batch_size=2, max_batches=2)
        self.assertEqual(await expiry.run_once(), {"event_txn_ids": 0, "received_transactions": 0})
        self.reactor.advance(DAY_MS / 1000 + 1)
        self.assertEqual(await expiry.run_once(), {"event_txn_ids": 4, "received_transactions": 1})
        self.assertEqual(await expiry.run_once(), {"event_txn_ids": 3, "received_transactions": 0})
        self.assertEqual(await self.count("event_txn_ids"), 0)

    def test_bad_settings_refused(self) -> None:
        """Non-positive lifetimes, intervals or batch sizes are refused with the values named."""
        with self.assertRaisesRegex(ValueError, "batch_size=0"):
            TransactionIdExpiry(self.clock, [], batch_size=0)
