"""Forgetting old transaction ids: client ``PUT .../{txnId}`` requests and inbound federation ``/send``.

A transaction id makes a retried request idempotent, and retries come soon
after the first attempt (a client's backoff, a server's retry schedule), so
ids are kept for ``lifetime_ms`` (a day by default: long enough for a phone
that lost its connection mid-request, and the echo of ``unsigned.transaction_id``
in the sender's own later syncs) and then deleted.  Until a cleanup deletes
it, an id keeps working, so idempotency never lapses early, and it survives
restarts (the ids are in the database).

The master runs a cleanup every ``interval_s``: each table loses its
expired rows in deletes of at most ``batch_size`` rows found through the
insertion-time index, at most ``max_batches`` per table and run, so a backlog
(the first run after an upgrade) is spread over runs, never one long
transaction.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Optional, Sequence

import attrs
from twisted.internet import defer, task

from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

#: Deletes at most ``limit`` rows stored before ``before_ts_ms``; returns how many it deleted.
ExpireRows = Callable[[int, int], Awaitable[int]]

DAY_MS = 24 * 60 * 60 * 1000


@attrs.frozen(slots=True)
class TxnIdTable:
    """One store of transaction ids: a name for logs and its bounded delete."""

    name: str
    expire: ExpireRows


class TransactionIdExpiry:
    def __init__(
        self,
        clock: Clock,
        tables: Sequence[TxnIdTable],
        *,
        lifetime_ms: int = DAY_MS,
        interval_s: float = 600.0,
        batch_size: int = 1000,
        max_batches: int = 100,
    ) -> None:
        if lifetime_ms <= 0 or interval_s <= 0 or batch_size <= 0 or max_batches <= 0:
            raise ValueError(
                f"lifetime_ms={lifetime_ms}, interval_s={interval_s}, batch_size={batch_size} and "
                f"max_batches={max_batches} must be positive"
            )
        self._clock = clock
        self._tables = list(tables)
        self._lifetime_ms = lifetime_ms
        self._interval_s = interval_s
        self._batch_size = batch_size
        self._max_batches = max_batches
        self._loop: Optional[task.LoopingCall] = None

    async def run_once(self) -> dict[str, int]:
        """Delete what has expired now (within the per-run bound); rows deleted per table."""
        before = self._clock.time_msec() - self._lifetime_ms
        deleted: dict[str, int] = {}
        for table in self._tables:
            total = 0
            try:
                for _ in range(self._max_batches):
                    n = await table.expire(before, self._batch_size)
                    total += n
                    if n < self._batch_size:
                        break
            except Exception:
                logger.warning("expiring transaction ids of %s failed", table.name, exc_info=True)
            deleted[table.name] = total
            if total:
                logger.info("expired %d transaction ids of %s", total, table.name)
        return deleted

    def start(self) -> None:
        """Run every ``interval_s`` (the first run one interval from now) until :meth:`stop`."""
        self._loop = self._clock.looping_call(lambda: defer.ensureDeferred(self.run_once()), self._interval_s)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
