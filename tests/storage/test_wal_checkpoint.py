"""SQLite's write-ahead log is checkpointed on a thread of its own, not in the writer's commits."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from matrixd.storage.database import Cursor, Database
from matrixd.storage.wal_checkpoint import SAFETY_NET_PAGES, WalCheckpointer

#: Rows of 4 KiB: each takes about a page of the log.
BLOB = b"x" * 4000


class WalCheckpointTestCase(TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="matrixd-wal-")
        self.path = os.path.join(self.dir, "homeserver.db")
        self.db = Database({"name": "sqlite3", "args": {"database": self.path}}, reactor)
        self.addCleanup(self._cleanup)

    def _cleanup(self) -> None:
        self.db.close()
        shutil.rmtree(self.dir)

    def checkpointer(self) -> WalCheckpointer:
        checkpointer = self.db.wal_checkpointer
        assert checkpointer is not None
        return checkpointer

    async def write_pages(self, transactions: int, rows_each: int) -> None:
        def insert(txn: Cursor) -> None:
            txn.execute_batch("INSERT INTO blobs (data) VALUES (?)", ((BLOB,) for _ in range(rows_each)))

        for _ in range(transactions):
            await self.db.run_interaction("insert_blobs", insert)

    async def wait_for_checkpoint(self, timeout: float = 10.0) -> tuple[int, int, int]:
        checkpointer = self.checkpointer()
        for _ in range(int(timeout / 0.02)):
            if checkpointer.last_result is not None:
                return checkpointer.last_result
            await deferLater(reactor, 0.02, lambda: None)
        self.fail("no checkpoint ran")

    async def test_writer_commits_without_checkpointing(self) -> None:
        """The writer's threshold is the safety net's: its commits let the log grow past SQLite's 1,000
        pages (a checkpoint in a commit would keep it near that), and the checkpointer then empties it."""
        checkpointer = self.checkpointer()
        checkpointer.delay = 3600.0  # not during the writes
        await self.db.execute("create", "CREATE TABLE blobs (n INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        rows = await self.db.execute("threshold", "PRAGMA wal_autocheckpoint")
        self.assertEqual(rows, [(SAFETY_NET_PAGES,)])
        await self.write_pages(transactions=30, rows_each=100)
        self.assertGreater(os.path.getsize(self.path + "-wal"), 8 * 1024 * 1024)
        self.assertIsNone(checkpointer.last_result)

        assert checkpointer._timer is not None
        checkpointer._timer.reset(0.01)  # the checkpoint pending since the first write: now
        busy, log_frames, checkpointed = await self.wait_for_checkpoint()
        self.assertEqual(busy, 0)
        self.assertGreater(log_frames, 2000)
        self.assertEqual(checkpointed, log_frames)
        rows = await self.db.execute("count", "SELECT COUNT(*) FROM blobs")
        self.assertEqual(rows, [(3000,)])

    async def test_only_writes_schedule_a_checkpoint(self) -> None:
        checkpointer = self.checkpointer()
        checkpointer.delay = 0.01
        await self.db.execute("read", "SELECT 1")
        await deferLater(reactor, 0.1, lambda: None)
        self.assertIsNone(checkpointer.last_result)
        await self.db.execute("create", "CREATE TABLE blobs (n INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        await self.write_pages(transactions=1, rows_each=10)
        busy, log_frames, checkpointed = await self.wait_for_checkpoint()
        self.assertEqual((busy, checkpointed), (0, log_frames))

    async def test_one_checkpoint_per_delay_while_writes_go_on(self) -> None:
        """Writes during the delay join the pending checkpoint; one during a checkpoint gets the next."""
        checkpointer = self.checkpointer()
        checkpointer.delay = 0.2
        await self.db.execute("create", "CREATE TABLE blobs (n INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        runs: list[tuple[int, int, int]] = []
        original = checkpointer._checkpoint

        def counted() -> tuple[int, int, int]:
            result = original()
            runs.append(result)
            return result

        checkpointer._checkpoint = counted  # type: ignore[method-assign]
        await self.write_pages(transactions=5, rows_each=10)
        await self.wait_for_checkpoint()
        self.assertEqual(len(runs), 1)
        self.assertEqual(runs[0][1], runs[0][2])

    async def test_a_failed_checkpoint_is_tried_again_after_writes(self) -> None:
        """A checkpoint that fails (another process's holding the lock, say) is logged; the writes that
        came during it schedule the next one, which runs."""
        checkpointer = self.checkpointer()
        checkpointer.delay = 0.01
        await self.db.execute("create", "CREATE TABLE blobs (n INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        original = checkpointer._checkpoint
        attempts: list[int] = []

        def flaky() -> tuple[int, int, int]:
            attempts.append(1)
            if len(attempts) == 1:
                checkpointer._dirty = True  # a write committed while this one ran
                raise sqlite3.OperationalError("database is locked")
            return original()

        checkpointer._checkpoint = flaky  # type: ignore[method-assign]
        await self.write_pages(transactions=1, rows_each=10)
        busy, log_frames, checkpointed = await self.wait_for_checkpoint()
        self.assertEqual(len(attempts), 2)
        self.assertEqual((busy, checkpointed), (0, log_frames))

    async def test_close_cancels_a_pending_checkpoint(self) -> None:
        checkpointer = self.checkpointer()
        checkpointer.delay = 0.05
        await self.db.execute("create", "CREATE TABLE blobs (n INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        await self.write_pages(transactions=1, rows_each=10)
        self.db.close()
        await deferLater(reactor, 0.2, lambda: None)
        self.assertIsNone(checkpointer.last_result)
        checkpointer.wrote()  # after close: nothing is scheduled
        await deferLater(reactor, 0.1, lambda: None)
        self.assertIsNone(checkpointer.last_result)


class NoCheckpointerTestCase(TestCase):
    def test_memory_and_inline_databases_have_none(self) -> None:
        """A memory database has no log; an inline one (in-process tests) runs no threads."""
        memory = Database({"name": "sqlite3", "args": {"database": ":memory:"}}, reactor)
        self.addCleanup(memory.close)
        self.assertIsNone(memory.wal_checkpointer)
        directory = tempfile.mkdtemp(prefix="matrixd-wal-")
        path = os.path.join(directory, "inline.db")
        inline = Database({"name": "sqlite3", "args": {"database": path}}, reactor, inline=True)
        self.addCleanup(shutil.rmtree, directory)
        self.addCleanup(inline.close)
        self.assertIsNone(inline.wal_checkpointer)
