"""Local room aliases (``#name:this_server`` → room id)."""

from __future__ import annotations

from typing import Optional

from matrixd.storage.database import Cursor, Database
from matrixd.util.clock import Clock


class AliasStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create_alias(self, room_alias: str, room_id: str, creator: str) -> bool:
        """Map an alias; False if it is already taken (nothing changed)."""
        def _txn(txn: Cursor) -> bool:
            txn.execute(
                "INSERT INTO room_aliases (room_alias, room_id, creator, created_ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (room_alias) DO NOTHING",
                (room_alias, room_id, creator, self._clock.time_msec()),
            )
            return txn.rowcount == 1

        return await self._db.run_interaction("create_alias", _txn)

    async def get_alias(self, room_alias: str) -> Optional[tuple[str, str]]:
        """(room_id, creator) for an alias, or None."""
        rows = await self._db.execute(
            "get_alias", "SELECT room_id, creator FROM room_aliases WHERE room_alias = ?", room_alias
        )
        return (rows[0][0], rows[0][1]) if rows else None

    async def delete_alias(self, room_alias: str) -> Optional[str]:
        """Remove an alias; returns the room it pointed at, or None if it did not exist."""
        def _txn(txn: Cursor) -> Optional[str]:
            txn.execute("SELECT room_id FROM room_aliases WHERE room_alias = ?", (room_alias,))
            row = txn.fetchone()
            if row is None:
                return None
            txn.execute("DELETE FROM room_aliases WHERE room_alias = ?", (room_alias,))
            return str(row[0])

        return await self._db.run_interaction("delete_alias", _txn)

    async def get_aliases_for_room(self, room_id: str) -> list[str]:
        rows = await self._db.execute(
            "get_aliases_for_room", "SELECT room_alias FROM room_aliases WHERE room_id = ? ORDER BY room_alias",
            room_id,
        )
        return [r[0] for r in rows]

    async def move_aliases(self, old_room_id: str, new_room_id: str) -> list[str]:
        """Point every alias of ``old_room_id`` at ``new_room_id`` (room upgrades); returns them, sorted."""
        def _txn(txn: Cursor) -> list[str]:
            txn.execute("SELECT room_alias FROM room_aliases WHERE room_id = ? ORDER BY room_alias", (old_room_id,))
            moved = [str(r[0]) for r in txn]
            txn.execute("UPDATE room_aliases SET room_id = ? WHERE room_id = ?", (new_room_id, old_room_id))
            return moved

        return await self._db.run_interaction("move_aliases", _txn)
