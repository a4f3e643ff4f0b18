"""Ids for tables that need unique numbers but are not streams (e.g. state group ids).

On PostgreSQL a real SEQUENCE, so any process may allocate; on SQLite (one
process only) a counter seeded from the table's current maximum.  Ids are
allocated inside the transaction that uses them; gaps are harmless.
"""

from __future__ import annotations

import abc
import threading
import weakref
from typing import Optional

from matrixd.storage.database import Cursor, Database


class SequenceGenerator(abc.ABC):
    @abc.abstractmethod
    def next_id_txn(self, txn: Cursor) -> int:
        """A fresh id, never handed out before."""


class PostgresSequenceGenerator(SequenceGenerator):
    def __init__(self, sequence_name: str) -> None:
        self._sequence_name = sequence_name

    def next_id_txn(self, txn: Cursor) -> int:
        txn.execute("SELECT nextval(?)", (self._sequence_name,))
        row = txn.fetchone()
        assert row is not None
        return int(row[0])


class LocalSequenceGenerator(SequenceGenerator):
    """A counter seeded from ``MAX(column)`` on first use (SQLite has one writer process)."""

    def __init__(self, table: str, column: str) -> None:
        self._table = table
        self._column = column
        self._lock = threading.Lock()
        self._current: Optional[int] = None

    def next_id_txn(self, txn: Cursor) -> int:
        with self._lock:
            if self._current is None:
                txn.execute(f"SELECT COALESCE(MAX({self._column}), 0) FROM {self._table}")
                row = txn.fetchone()
                assert row is not None
                self._current = int(row[0])
            self._current += 1
            return self._current


_generators: "weakref.WeakKeyDictionary[Database, dict[str, SequenceGenerator]]" = weakref.WeakKeyDictionary()


def get_sequence_generator(db: Database, sequence_name: str, table: str, column: str) -> SequenceGenerator:
    """The generator for ``sequence_name`` on ``db``, shared by every store using that database.

    Sharing matters on SQLite, where the counter lives in memory: two
    independent counters would hand out the same id.  The PostgreSQL sequence
    must exist in the schema.
    """
    per_db = _generators.setdefault(db, {})
    gen = per_db.get(sequence_name)
    if gen is None:
        if db.engine.name == "postgres":
            gen = PostgresSequenceGenerator(sequence_name)
        else:
            gen = LocalSequenceGenerator(table, column)
        per_db[sequence_name] = gen
    return gen
