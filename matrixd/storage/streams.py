"""Stream id allocation for the single writer of a stream.

Every stream (events, backfill, receipts, account data, ...) numbers its rows
with ids handed out here, in the writing process, before the row's transaction
runs::

    with generator.get_next() as stream_id:
        await db.run_interaction("write_thing", write_txn, stream_id)
    # the with-block has exited: the id is finished (committed or rolled back)

Ids are handed out in order but transactions finish in any order, so a reader
told "everything up to N" must never be told an N that still has an unfinished
id below it: :meth:`StreamIdGenerator.get_current_token` returns the highest
id such that it and every id before it are finished.  That is the position the
writer announces over replication and the bound readers query up to.

A generator with ``step=-1`` counts down from -1 (backfilled events, which
sort before everything the server has seen live).  "Before" and "highest"
then mean "in allocation order": its current token is the most negative id
with every id between it and 0 finished.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Sequence

from matrixd.storage.database import Cursor, Database


class StreamIdGenerator:
    """Allocates stream ids for ``table.column`` in the one process that writes it.

    Construct, then ``await load()`` (or use :meth:`create`) before allocating.

    Args:
        db: the database holding the table.
        table, column: where the ids end up; the largest existing one
            (smallest, for ``step=-1``) is where allocation resumes.
        step: 1, or -1 for a downward stream.
        extra_tables: further ``(table, column)`` pairs sharing this stream.
    """

    def __init__(
        self,
        db: Database,
        table: str,
        column: str,
        *,
        step: int = 1,
        extra_tables: Sequence[tuple[str, str]] = (),
    ) -> None:
        if step not in (1, -1):
            raise ValueError(f"step must be 1 or -1, not {step!r}")
        self._db = db
        self._tables = [(table, column), *extra_tables]
        self.step = step
        self._lock = threading.Lock()
        self._current: int | None = None  # the last id handed out
        # Allocated but unfinished ids, in allocation order (dicts keep insertion order).
        self._unfinished: dict[int, None] = {}

    @classmethod
    async def create(
        cls,
        db: Database,
        table: str,
        column: str,
        *,
        step: int = 1,
        extra_tables: Sequence[tuple[str, str]] = (),
    ) -> "StreamIdGenerator":
        gen = cls(db, table, column, step=step, extra_tables=extra_tables)
        await gen.load()
        return gen

    async def load(self) -> None:
        """Read where allocation resumes from the database."""
        current = await self._db.run_interaction("stream_id_load", self._load_txn)
        with self._lock:
            self._current = current

    def _load_txn(self, txn: Cursor) -> int:
        agg = "MAX" if self.step > 0 else "MIN"
        current = 0
        for table, column in self._tables:
            txn.execute(f"SELECT {agg}({column}) FROM {table}")
            row = txn.fetchone()
            if row is not None and row[0] is not None:
                value = int(row[0])
                current = max(current, value) if self.step > 0 else min(current, value)
        return current

    def _require_loaded(self) -> int:
        if self._current is None:
            raise RuntimeError(f"StreamIdGenerator for {self._tables[0]} used before load()")
        return self._current

    @contextlib.contextmanager
    def get_next(self) -> Iterator[int]:
        """Allocate one id; it counts as finished when the with-block exits (however it exits)."""
        with self.get_next_mult(1) as ids:
            yield ids[0]

    @contextlib.contextmanager
    def get_next_mult(self, n: int) -> Iterator[list[int]]:
        """Allocate ``n`` consecutive ids (in allocation order) for one transaction."""
        if n < 1:
            raise ValueError(f"need at least one id, asked for {n}")
        with self._lock:
            current = self._require_loaded()
            ids = [current + self.step * (i + 1) for i in range(n)]
            self._current = ids[-1]
            for i in ids:
                self._unfinished[i] = None
        try:
            yield ids
        finally:
            with self._lock:
                for i in ids:
                    self._unfinished.pop(i, None)

    def get_current_token(self) -> int:
        """The highest id such that it and all ids allocated before it are finished."""
        with self._lock:
            current = self._require_loaded()
            if self._unfinished:
                first = next(iter(self._unfinished))
                return first - self.step
            return current

    def get_max_allocated(self) -> int:
        """The last id handed out (possibly unfinished): not safe to announce to readers."""
        with self._lock:
            return self._require_loaded()
