"""The membership facts history visibility needs that no state map holds.

The ``shared`` rule lets a user see an event if they joined the room at any
point after it; that is a question about the user's membership *history*,
answered here from ``room_memberships``.
"""

from __future__ import annotations

from typing import Collection

from matrixd.storage.database import Cursor, Database
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, in_list_clause
from matrixd.util.clock import Clock


class VisibilityStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get_last_join_stream_orderings(self, user_id: str, room_ids: Collection[str]) -> dict[str, int]:
        """``{room_id: stream ordering of the user's latest accepted join}`` for rooms they ever joined."""
        rooms = sorted(set(room_ids))

        def _txn(txn: Cursor) -> dict[str, int]:
            found: dict[str, int] = {}
            for chunk in batch_iter(rooms, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "m.room_id", chunk)
                txn.execute(
                    "SELECT m.room_id, MAX(m.stream_ordering) FROM room_memberships m"
                    " JOIN events e ON e.event_id = m.event_id"
                    f" WHERE {clause} AND m.user_id = ? AND m.membership = 'join'"
                    " AND NOT e.outlier AND e.rejected_reason IS NULL AND NOT e.soft_failed"
                    " GROUP BY m.room_id",
                    [*args, user_id],
                )
                found.update((r[0], int(r[1])) for r in txn if r[1] is not None)
            return found

        return await self._db.run_interaction("get_last_join_stream_orderings", _txn)
