"""Global profiles (display name, avatar) of local users."""

from __future__ import annotations

from typing import Optional

from matrixd.storage.database import Cursor, Database
from matrixd.util.clock import Clock


class ProfileStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create_profile(self, user_id: str, displayname: Optional[str]) -> None:
        def _txn(txn: Cursor) -> None:
            txn.execute(
                "INSERT INTO profiles (user_id, displayname) VALUES (?, ?) ON CONFLICT (user_id) DO NOTHING",
                (user_id, displayname),
            )

        await self._db.run_interaction("create_profile", _txn)

    async def get_profile(self, user_id: str) -> Optional[tuple[Optional[str], Optional[str]]]:
        """(displayname, avatar_url), or None if the user has no profile row."""
        rows = await self._db.execute(
            "get_profile", "SELECT displayname, avatar_url FROM profiles WHERE user_id = ?", user_id
        )
        return (rows[0][0], rows[0][1]) if rows else None

    async def set_displayname(self, user_id: str, displayname: Optional[str]) -> None:
        await self._upsert(user_id, "displayname", displayname)

    async def set_avatar_url(self, user_id: str, avatar_url: Optional[str]) -> None:
        await self._upsert(user_id, "avatar_url", avatar_url)

    async def _upsert(self, user_id: str, column: str, value: Optional[str]) -> None:
        assert column in ("displayname", "avatar_url")

        def _txn(txn: Cursor) -> None:
            txn.execute(
                f"INSERT INTO profiles (user_id, {column}) VALUES (?, ?)"
                f" ON CONFLICT (user_id) DO UPDATE SET {column} = excluded.{column}",
                (user_id, value),
            )

        await self._db.run_interaction("set_profile_" + column, _txn)
