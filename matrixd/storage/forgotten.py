"""Rooms users have forgotten (``POST /rooms/{roomId}/forget``)."""

from __future__ import annotations

from matrixd.storage.database import Cursor, Database
from matrixd.util.clock import Clock


class ForgottenRoomsStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def forget(self, user_id: str, room_id: str) -> None:
        def _txn(txn: Cursor) -> None:
            txn.execute(
                "INSERT INTO forgotten_rooms (user_id, room_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (user_id, room_id),
            )

        await self._db.run_interaction("forget_room", _txn)

    async def unforget(self, user_id: str, room_id: str) -> None:
        await self._db.execute(
            "unforget_room", "DELETE FROM forgotten_rooms WHERE user_id = ? AND room_id = ?", user_id, room_id
        )

    async def get_forgotten_rooms(self, user_id: str) -> frozenset[str]:
        rows = await self._db.execute(
            "get_forgotten_rooms", "SELECT room_id FROM forgotten_rooms WHERE user_id = ?", user_id
        )
        return frozenset(r[0] for r in rows)
