"""Client transaction ids mapped to the events they created (idempotent sends)."""

from __future__ import annotations

from typing import Optional

from matrixd.storage.database import Cursor, Database
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

    async def store_txn(self, user_id: str, device_id: str, txn_id: str, room_id: str, event_id: str) -> None:
        def _txn(txn: Cursor) -> None:
            txn.execute(
                "INSERT INTO event_txn_ids (user_id, device_id, txn_id, room_id, event_id, inserted_ts)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, device_id, txn_id) DO NOTHING",
                (user_id, device_id, txn_id, room_id, event_id, self._clock.time_msec()),
            )

        await self._db.run_interaction("store_txn", _txn)

    async def expire_before(self, ts_ms: int) -> int:
        """Forget transaction ids older than ``ts_ms`` (clients retry within minutes, not days)."""
        def _txn(txn: Cursor) -> int:
            txn.execute("DELETE FROM event_txn_ids WHERE inserted_ts < ?", (ts_ms,))
            return txn.rowcount

        return await self._db.run_interaction("expire_txn_ids", _txn)
