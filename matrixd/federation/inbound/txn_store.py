"""SQL for the answers to inbound transactions (``received_transactions``), kept for idempotency."""

from __future__ import annotations

import json
from typing import Any, Optional

from matrixd.storage.database import Cursor, Database
from matrixd.storage.sql import delete_older_than_txn
from matrixd.util.clock import Clock

JsonDict = dict[str, Any]


class ReceivedTransactionStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get_response(self, origin: str, txn_id: str) -> Optional[JsonDict]:
        raw = await self._db.simple_select_one_onecol(
            "received_transactions", {"origin": origin, "transaction_id": txn_id}, "response_json",
            allow_none=True, desc="get_received_txn",
        )
        if raw is None:
            return None
        parsed = json.loads(raw)
        return parsed if isinstance(parsed, dict) else None

    async def set_response(self, origin: str, txn_id: str, response: JsonDict) -> None:
        raw = json.dumps(response, separators=(",", ":"))
        now = self._clock.time_msec()

        def _txn(txn: Cursor) -> None:
            txn.execute(
                "INSERT INTO received_transactions (origin, transaction_id, response_json, received_ts)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (origin, transaction_id) DO NOTHING",
                (origin, txn_id, raw, now),
            )

        await self._db.run_interaction("set_received_txn", _txn)

    async def expire_before(self, ts_ms: int, limit: int) -> int:
        """Forget at most ``limit`` of the answers stored before ``ts_ms`` (oldest first)."""
        def _txn(txn: Cursor) -> int:
            return delete_older_than_txn(txn, "received_transactions", "received_ts", ("origin", "transaction_id"),
                                         ts_ms, limit)

        return await self._db.run_interaction("expire_received_txns", _txn)
