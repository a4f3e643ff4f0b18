"""Global profiles of local users: display name and avatar (``profiles``) and the
extended fields (``m.tz``, namespaced custom keys) in ``profile_fields``."""

from __future__ import annotations

import json
from typing import Any, Optional

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
        if column not in ("displayname", "avatar_url"):
            raise ValueError(f"not a profile column: {column!r}")

        def _txn(txn: Cursor) -> None:
            txn.execute(
                f"INSERT INTO profiles (user_id, {column}) VALUES (?, ?)"
                f" ON CONFLICT (user_id) DO UPDATE SET {column} = excluded.{column}",
                (user_id, value),
            )

        await self._db.run_interaction("set_profile_" + column, _txn)

    # -- extended fields -----------------------------------------------------------

    async def get_profile_fields(self, user_id: str) -> dict[str, Any]:
        """The user's extended fields (not displayname/avatar_url), by name."""
        rows = await self._db.execute(
            "get_profile_fields", "SELECT field_name, value FROM profile_fields WHERE user_id = ?", user_id
        )
        return {r[0]: json.loads(r[1]) for r in rows}

    async def set_profile_field(self, user_id: str, field_name: str, value: Any) -> None:
        if field_name in ("displayname", "avatar_url"):
            raise ValueError(f"{field_name!r} is a profile column, not an extended field")
        encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"))

        def _txn(txn: Cursor) -> None:
            txn.execute(
                "INSERT INTO profile_fields (user_id, field_name, value) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, field_name) DO UPDATE SET value = excluded.value",
                (user_id, field_name, encoded),
            )

        await self._db.run_interaction("set_profile_field", _txn)

    async def delete_profile_field(self, user_id: str, field_name: str) -> None:
        await self._db.execute(
            "delete_profile_field", "DELETE FROM profile_fields WHERE user_id = ? AND field_name = ?",
            user_id, field_name,
        )

    async def clear_profile(self, user_id: str) -> None:
        """Forget everything in the user's profile (deactivation); the row stays, empty."""
        def _txn(txn: Cursor) -> None:
            txn.execute("UPDATE profiles SET displayname = NULL, avatar_url = NULL WHERE user_id = ?", (user_id,))
            txn.execute("DELETE FROM profile_fields WHERE user_id = ?", (user_id,))

        await self._db.run_interaction("clear_profile", _txn)
