"""Ids for tables that need unique numbers but are not streams (e.g. state group ids).

On PostgreSQL a real SEQUENCE, so any process may allocate; on SQLite (one
process only) a counter seeded from the table's current maximum.  Ids are
allocated inside the transaction that uses them; gaps are harmless.
"""

from __future__ import annotations

import abc
import threading
from typing import Optional

from matrixd.storage.database import Cursor


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


def build_sequence_generator(engine_name: str, sequence_name: str, table: str, column: str) -> SequenceGenerator:
    """The right generator for the engine; the PostgreSQL sequence must exist in the schema."""
    if engine_name == "postgres":
        return PostgresSequenceGenerator(sequence_name)
    return LocalSequenceGenerator(table, column)
