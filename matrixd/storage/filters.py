"""Client filters (``POST /user/{userId}/filter``): stored once per user, read by id."""

from __future__ import annotations

import json
from typing import Any, Optional

from canonicaljson import encode_canonical_json

from matrixd.storage.database import Cursor, Database
from matrixd.util.clock import Clock


class FilterStore:
    """Filters are numbered per user from 0 and never change once stored.

    Writes happen on the master only; callers serialise writes per user
    (the id is allocated as ``MAX + 1`` inside the transaction).
    """

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add_filter(self, user_id: str, definition: dict[str, Any]) -> int:
        """Store a filter definition; an identical definition already stored returns its id."""
        canonical = encode_canonical_json(definition).decode("utf-8")

        def _txn(txn: Cursor) -> int:
            txn.execute(
                "SELECT filter_id FROM user_filters WHERE user_id = ? AND filter_json = ?",
                (user_id, canonical),
            )
            row = txn.fetchone()
            if row is not None:
                return int(row[0])
            txn.execute("SELECT MAX(filter_id) FROM user_filters WHERE user_id = ?", (user_id,))
            row = txn.fetchone()
            filter_id = 0 if row is None or row[0] is None else int(row[0]) + 1
            txn.execute(
                "INSERT INTO user_filters (user_id, filter_id, filter_json) VALUES (?, ?, ?)",
                (user_id, filter_id, canonical),
            )
            return filter_id

        return await self._db.run_interaction("add_filter", _txn)

    async def get_filter(self, user_id: str, filter_id: int) -> Optional[dict[str, Any]]:
        """The stored definition, None if the user has no filter with that id."""
        rows = await self._db.execute(
            "get_filter",
            "SELECT filter_json FROM user_filters WHERE user_id = ? AND filter_id = ?",
            user_id,
            filter_id,
        )
        if not rows:
            return None
        value: dict[str, Any] = json.loads(rows[0][0])
        return value
