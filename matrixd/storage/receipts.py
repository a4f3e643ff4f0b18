"""Receipts: the latest receipt per (room, type, user, thread), numbered by the receipts stream.

Every change takes a new id from the stream's :class:`StreamIdGenerator`
inside the writing transaction, so "the receipts after position p" is a range
query on ``stream_id`` (what ``/sync`` and replication catch-up both use).
The writer announces the new position after the call returns.
"""

from __future__ import annotations

import json
from typing import Any, Collection, Optional

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, in_list_clause
from matrixd.storage.streams import StreamIdGenerator
from matrixd.util.clock import Clock

#: Receipts only their sender may see.
PRIVATE_RECEIPT_TYPES = frozenset({"m.read.private"})

_COLUMNS = "stream_id, room_id, receipt_type, user_id, thread_id, event_id, data"


@attrs.frozen(slots=True)
class ReceiptRow:
    """One receipt; ``thread_id`` None means unthreaded."""

    stream_id: int
    room_id: str
    receipt_type: str
    user_id: str
    thread_id: Optional[str]
    event_id: str
    data: dict[str, Any]


def _row(r: tuple[Any, ...]) -> ReceiptRow:
    return ReceiptRow(int(r[0]), r[1], r[2], r[3], r[4] or None, r[5], json.loads(r[6]))


def _visibility_clause(user_id: str) -> tuple[str, list[Any]]:
    """Private receipts of other users are never returned."""
    types = sorted(PRIVATE_RECEIPT_TYPES)
    marks = ",".join("?" * len(types))
    return f"(receipt_type NOT IN ({marks}) OR user_id = ?)", [*types, user_id]


class ReceiptStore:
    """Reads and writes ``receipts``; the master is its only writer."""

    def __init__(self, db: Database, clock: Clock, stream_ids: StreamIdGenerator) -> None:
        self._db = db
        self._clock = clock
        self._ids = stream_ids

    @staticmethod
    async def create_stream_ids(db: Database) -> StreamIdGenerator:
        return await StreamIdGenerator.create(db, "receipts", "stream_id")

    @property
    def stream_ids(self) -> StreamIdGenerator:
        """The stream's id generator (replication reports its last allocated id to a worker that wrote)."""
        return self._ids

    def get_current_token(self) -> int:
        """The announceable position: every receipt at or below it is committed."""
        return self._ids.get_current_token()

    async def insert_receipt(
        self,
        room_id: str,
        receipt_type: str,
        user_id: str,
        thread_id: Optional[str],
        event_id: str,
        event_stream_ordering: int,
        data: dict[str, Any],
    ) -> Optional[int]:
        """Move a receipt to ``event_id``; returns its stream id, None if it would move backwards.

        A receipt for an event no later (in stream order) than the current one
        of the same key changes nothing.
        """
        thread_key = thread_id or ""
        data_json = json.dumps(data, separators=(",", ":"))

        def _txn(txn: Cursor, stream_id: int) -> bool:
            txn.execute(
                "SELECT event_stream_ordering, event_id FROM receipts"
                " WHERE room_id = ? AND receipt_type = ? AND user_id = ? AND thread_id = ?",
                (room_id, receipt_type, user_id, thread_key),
            )
            row = txn.fetchone()
            if row is not None and (int(row[0]) >= event_stream_ordering or row[1] == event_id):
                return False
            txn.execute(
                "INSERT INTO receipts (stream_id, room_id, receipt_type, user_id, thread_id, event_id,"
                " event_stream_ordering, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET"
                " stream_id = EXCLUDED.stream_id, event_id = EXCLUDED.event_id,"
                " event_stream_ordering = EXCLUDED.event_stream_ordering, data = EXCLUDED.data",
                (stream_id, room_id, receipt_type, user_id, thread_key, event_id, event_stream_ordering, data_json),
            )
            return True

        with self._ids.get_next() as stream_id:
            written = await self._db.run_interaction("insert_receipt", _txn, stream_id)
        return stream_id if written else None

    async def get_receipts_for_rooms(
        self,
        room_ids: Collection[str],
        for_user: str,
        from_id: Optional[int] = None,
        to_id: Optional[int] = None,
    ) -> list[ReceiptRow]:
        """Receipts in the rooms that ``for_user`` may see, optionally only those in ``(from_id, to_id]``."""
        rooms = list(room_ids)

        def _txn(txn: Cursor) -> list[ReceiptRow]:
            out: list[ReceiptRow] = []
            vis, vis_args = _visibility_clause(for_user)
            for chunk in batch_iter(rooms, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "room_id", chunk)
                sql_text = f"SELECT {_COLUMNS} FROM receipts WHERE {clause} AND {vis}"
                all_args: list[Any] = [*args, *vis_args]
                if from_id is not None:
                    sql_text += " AND stream_id > ?"
                    all_args.append(from_id)
                if to_id is not None:
                    sql_text += " AND stream_id <= ?"
                    all_args.append(to_id)
                txn.execute(sql_text + " ORDER BY stream_id", all_args)
                out.extend(_row(r) for r in txn)
            return out

        if not rooms:
            return []
        return await self._db.run_interaction("get_receipts_for_rooms", _txn)

    async def get_receipts_changed(self, for_user: str, from_id: int, to_id: int, limit: int) -> list[ReceiptRow]:
        """Receipts ``for_user`` may see with ``from_id < stream_id <= to_id``, oldest first, at most ``limit``."""
        vis, vis_args = _visibility_clause(for_user)
        rows = await self._db.execute(
            "get_receipts_changed",
            f"SELECT {_COLUMNS} FROM receipts WHERE stream_id > ? AND stream_id <= ? AND {vis}"
            " ORDER BY stream_id LIMIT ?",
            from_id,
            to_id,
            *vis_args,
            limit,
        )
        return [_row(r) for r in rows]

    async def get_user_receipt(
        self, room_id: str, receipt_type: str, user_id: str, thread_id: Optional[str] = None
    ) -> Optional[ReceiptRow]:
        rows = await self._db.execute(
            "get_user_receipt",
            f"SELECT {_COLUMNS} FROM receipts WHERE room_id = ? AND receipt_type = ? AND user_id = ?"
            " AND thread_id = ?",
            room_id,
            receipt_type,
            user_id,
            thread_id or "",
        )
        return _row(rows[0]) if rows else None

    async def get_updates(self, from_id: int, to_id: int, limit: int) -> list[ReceiptRow]:
        """Every receipt row with ``from_id < stream_id <= to_id``, oldest first (replication catch-up)."""
        rows = await self._db.execute(
            "get_receipt_updates",
            f"SELECT {_COLUMNS} FROM receipts WHERE stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?",
            from_id,
            to_id,
            limit,
        )
        return [_row(r) for r in rows]
