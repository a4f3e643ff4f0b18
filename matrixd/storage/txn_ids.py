"""Client transaction ids mapped to the events they created (idempotent sends)."""

from __future__ import annotations

from typing import Collection, Optional

from matrixd.storage.database import Cursor, Database
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, delete_older_than_txn, in_list_clause
from matrixd.util.clock import Clock


class TxnIdStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get_event_id_for_txn(self, user_id: str, device_id: str, txn_id: str) -> Optional[str]:
        rows = await self._db.execute(
            "get_event_id_for_txn",
            "SELECT event_id FROM event_txn_ids WHERE user_id = ? AND device_id = ? AND txn_id = ?",
            user_id, device_id, txn_id,
        )
        return rows[0][0] if rows else None

    async def get_txn_ids_for_events(
        self, user_id: str, device_id: str, event_ids: Collection[str]
    ) -> dict[str, str]:
        """``{event_id: txn_id}`` for those of ``event_ids`` this device sent with a transaction id.

        What ``unsigned.transaction_id`` shows the sending device.
        """
        ids = sorted(set(event_ids))

        def _txn(txn: Cursor) -> dict[str, str]:
            found: dict[str, str] = {}
            for chunk in batch_iter(ids, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "event_id", chunk)
                txn.execute(
                    f"SELECT event_id, txn_id FROM event_txn_ids WHERE {clause} AND user_id = ? AND device_id = ?",
                    [*args, user_id, device_id],
                )
                found.update((r[0], r[1]) for r in txn)
            return found

        if not ids:
            return {}
        return await self._db.run_interaction("get_txn_ids_for_events", _txn)

    async def store_txn(self, user_id: str, device_id: str, txn_id: str, room_id: str, event_id: str) -> None:
        def _txn(txn: Cursor) -> None:
            txn.execute(
                "INSERT INTO event_txn_ids (user_id, device_id, txn_id, room_id, event_id, inserted_ts)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, device_id, txn_id) DO NOTHING",
                (user_id, device_id, txn_id, room_id, event_id, self._clock.time_msec()),
            )

        await self._db.run_interaction("store_txn", _txn)

    async def expire_before(self, ts_ms: int, limit: int) -> int:
        """Forget at most ``limit`` of the transaction ids stored before ``ts_ms`` (oldest first)."""
        def _txn(txn: Cursor) -> int:
            return delete_older_than_txn(txn, "event_txn_ids", "inserted_ts", ("user_id", "device_id", "txn_id"),
                                         ts_ms, limit)

        return await self._db.run_interaction("expire_txn_ids", _txn)
