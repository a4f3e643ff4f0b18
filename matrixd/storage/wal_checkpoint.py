"""Checkpointing an SQLite database's write-ahead log off the writer's thread.

SQLite's automatic checkpoint runs inside the commit that takes the log past
1,000 pages, on the thread that committed, and syncs both files to disk. On a
remote join of a 2,000-member room that was over half the time spent storing
the room's events: every transaction waited for its share of a checkpoint.

``WalCheckpointer`` instead runs PASSIVE checkpoints (which never block the
writer or readers) on a thread and connection of their own, a short delay
after a transaction wrote: at most one per delay while writes go on, none while
the server is idle. The writer's own automatic checkpoint stays, at a much
higher threshold, as the safety net for a log that grows anyway (readers that
keep the checkpointer from reaching its end, a stalled disk).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Optional, cast

from prometheus_client import Histogram
from twisted.internet import threads
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from matrixd.storage.engines import Sqlite3Engine

logger = logging.getLogger(__name__)

#: Seconds between a write and the checkpoint that follows it.
CHECKPOINT_DELAY = 1.0
#: The writer's automatic checkpoint threshold while a checkpointer runs (pages of the log: 64 MiB at 4 KiB).
SAFETY_NET_PAGES = 16384

CHECKPOINT_SECONDS = Histogram(
    "matrixd_sqlite_wal_checkpoint_seconds",
    "Time of each background checkpoint of the SQLite write-ahead log",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


class WalCheckpointer:
    """Background PASSIVE checkpoints of one SQLite database file; call :meth:`wrote` after each write."""

    def __init__(self, engine: Sqlite3Engine, reactor: IReactorTime, delay: float = CHECKPOINT_DELAY) -> None:
        self._engine = engine
        self._reactor = reactor
        #: Seconds from a write to its checkpoint.
        self.delay = delay
        # No thread until the first checkpoint; one at most.
        self._pool = ThreadPool(minthreads=0, maxthreads=1, name="db-sqlite-checkpoint")
        self._pool.start()
        self._conn: Optional[sqlite3.Connection] = None
        self._timer: Optional[IDelayedCall] = None
        self._running = False
        self._dirty = False
        self._closed = False
        #: (busy, log frames, frames checkpointed) of the last checkpoint, for tests and debugging.
        self.last_result: Optional[tuple[int, int, int]] = None

    def wrote(self) -> None:
        """A transaction committed changes: checkpoint after the delay (unless one is due already)."""
        self._dirty = True
        if self._timer is None and not self._running and not self._closed:
            self._timer = self._reactor.callLater(self.delay, self._start)

    def _start(self) -> None:
        self._timer = None
        if self._closed:
            return
        self._running = True
        self._dirty = False
        d = threads.deferToThreadPool(cast(IReactorFromThreads, self._reactor), self._pool, self._checkpoint)
        d.addCallbacks(self._done, self._failed)

    def _checkpoint(self) -> tuple[int, int, int]:
        """On the checkpoint thread: one PASSIVE checkpoint; its (busy, log frames, checkpointed) row."""
        if self._conn is None:
            self._conn = self._engine.connect()
        started = time.monotonic()
        row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        CHECKPOINT_SECONDS.observe(time.monotonic() - started)
        return int(row[0]), int(row[1]), int(row[2])

    def _done(self, result: tuple[int, int, int]) -> None:
        self.last_result = result
        self._running = False
        if self._dirty:  # written to while it ran
            self.wrote()

    def _failed(self, failure: Failure) -> None:
        self._running = False
        # Another process's checkpoint holding the lock, say: tried again after the next write.
        logger.info("SQLite WAL checkpoint failed: %s", failure.getErrorMessage())
        if self._dirty:
            self.wrote()

    def close(self) -> None:
        """Cancel a pending checkpoint, wait for a running one and close the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._pool.stop()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

