"""Server-side key backups: backup versions of a user and the session keys in them.

A version's ``etag`` is a counter bumped by every change of its keys, so a
client can tell whether another client changed the backup since its last write.
"""

from __future__ import annotations

import json
from typing import Mapping, Optional

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.e2e_keys import canonical
from matrixd.types import JsonDict
from matrixd.util.clock import Clock


@attrs.frozen(slots=True)
class BackupVersion:
    version: int
    algorithm: str
    auth_data: JsonDict
    etag: int
    deleted: bool


@attrs.frozen(slots=True)
class RoomKey:
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: JsonDict

    def to_json(self) -> JsonDict:
        return {
            "first_message_index": self.first_message_index,
            "forwarded_count": self.forwarded_count,
            "is_verified": self.is_verified,
            "session_data": self.session_data,
        }

    def is_better_than(self, other: "RoomKey") -> bool:
        """The spec's replacement order: verified first, then lower first index, then fewer forwards."""
        if self.is_verified != other.is_verified:
            return self.is_verified
        if self.first_message_index != other.first_message_index:
            return self.first_message_index < other.first_message_index
        return self.forwarded_count < other.forwarded_count


#: ``{room_id: {session_id: key}}``
RoomKeys = Mapping[str, Mapping[str, RoomKey]]


def _version(row: tuple[object, ...]) -> BackupVersion:
    return BackupVersion(int(str(row[0])), str(row[1]), json.loads(str(row[2])), int(str(row[3])), bool(row[4]))


class RoomKeyStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    # -- versions -----------------------------------------------------------------

    async def create_version(self, user_id: str, algorithm: str, auth_data: JsonDict) -> int:
        """A new backup version, numbered after every version the user ever had."""

        def _txn(txn: Cursor) -> int:
            txn.execute("SELECT COALESCE(MAX(version), 0) FROM e2e_room_keys_versions WHERE user_id = ?", (user_id,))
            row = txn.fetchone()
            version = int(row[0] if row else 0) + 1
            txn.execute(
                "INSERT INTO e2e_room_keys_versions (user_id, version, algorithm, auth_data, etag, deleted)"
                " VALUES (?, ?, ?, ?, 0, FALSE)",
                (user_id, version, algorithm, canonical(auth_data)),
            )
            return version

        return await self._db.run_interaction("create_room_keys_version", _txn)

    async def get_version(self, user_id: str, version: Optional[int]) -> Optional[BackupVersion]:
        """A version (deleted ones included), or with ``version`` None the latest live one."""
        sql = "SELECT version, algorithm, auth_data, etag, deleted FROM e2e_room_keys_versions WHERE user_id = ?"
        if version is None:
            rows = await self._db.execute(
                "get_latest_room_keys_version", sql + " AND NOT deleted ORDER BY version DESC LIMIT 1", user_id
            )
        else:
            rows = await self._db.execute("get_room_keys_version", sql + " AND version = ?", user_id, version)
        return _version(rows[0]) if rows else None

    async def update_auth_data(self, user_id: str, version: int, auth_data: JsonDict) -> None:
        await self._db.execute(
            "update_room_keys_version",
            "UPDATE e2e_room_keys_versions SET auth_data = ? WHERE user_id = ? AND version = ? AND NOT deleted",
            canonical(auth_data), user_id, version,
        )

    async def delete_version(self, user_id: str, version: int) -> None:
        """Mark the version deleted and drop its keys (the row stays so the number is not reused)."""

        def _txn(txn: Cursor) -> None:
            txn.execute("DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?", (user_id, version))
            txn.execute("UPDATE e2e_room_keys_versions SET deleted = TRUE WHERE user_id = ? AND version = ?",
                        (user_id, version))

        await self._db.run_interaction("delete_room_keys_version", _txn)

    # -- keys ---------------------------------------------------------------------------

    async def get_keys(self, user_id: str, version: int, room_id: Optional[str] = None,
                       session_id: Optional[str] = None) -> dict[str, dict[str, RoomKey]]:
        sql = ("SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data"
               " FROM e2e_room_keys WHERE user_id = ? AND version = ?")
        args: list[object] = [user_id, version]
        if room_id is not None:
            sql += " AND room_id = ?"
            args.append(room_id)
            if session_id is not None:
                sql += " AND session_id = ?"
                args.append(session_id)
        rows = await self._db.execute("get_room_keys", sql + " ORDER BY room_id, session_id", *args)
        out: dict[str, dict[str, RoomKey]] = {}
        for r in rows:
            out.setdefault(r[0], {})[r[1]] = RoomKey(int(r[2]), int(r[3]), bool(r[4]), json.loads(r[5]))
        return out

    async def count_keys(self, user_id: str, version: int) -> int:
        rows = await self._db.execute(
            "count_room_keys", "SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = ? AND version = ?", user_id, version
        )
        return int(rows[0][0])

    async def put_keys(self, user_id: str, version: int, keys: RoomKeys) -> Optional[tuple[int, int]]:
        """Store keys that are new or better than the stored ones (spec replacement rules).

        Returns ``(etag, count)`` after the write, or None if the version is not
        the user's latest live version (checked in the same transaction).
        """

        def _txn(txn: Cursor) -> Optional[tuple[int, int]]:
            txn.execute(
                "SELECT version, etag FROM e2e_room_keys_versions WHERE user_id = ? AND NOT deleted"
                " ORDER BY version DESC LIMIT 1",
                (user_id,),
            )
            row = txn.fetchone()
            if row is None or int(row[0]) != version:
                return None
            etag = int(row[1])
            changed = False
            for room_id, sessions in sorted(keys.items()):
                for session_id, key in sorted(sessions.items()):
                    txn.execute(
                        "SELECT first_message_index, forwarded_count, is_verified FROM e2e_room_keys"
                        " WHERE user_id = ? AND version = ? AND room_id = ? AND session_id = ?",
                        (user_id, version, room_id, session_id),
                    )
                    old = txn.fetchone()
                    if old is not None and not key.is_better_than(RoomKey(int(old[0]), int(old[1]), bool(old[2]), {})):
                        continue
                    txn.execute(
                        "INSERT INTO e2e_room_keys (user_id, version, room_id, session_id, first_message_index,"
                        " forwarded_count, is_verified, session_data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET"
                        " first_message_index = EXCLUDED.first_message_index,"
                        " forwarded_count = EXCLUDED.forwarded_count, is_verified = EXCLUDED.is_verified,"
                        " session_data = EXCLUDED.session_data",
                        (user_id, version, room_id, session_id, key.first_message_index, key.forwarded_count,
                         key.is_verified, canonical(key.session_data)),
                    )
                    changed = True
            if changed:
                etag += 1
                txn.execute("UPDATE e2e_room_keys_versions SET etag = ? WHERE user_id = ? AND version = ?",
                            (etag, user_id, version))
            return etag, _count_txn(txn, user_id, version)

        return await self._db.run_interaction("put_room_keys", _txn)

    async def delete_keys(self, user_id: str, version: int, room_id: Optional[str] = None,
                          session_id: Optional[str] = None) -> tuple[int, int]:
        """Delete keys of a version (all, a room's, or one session); returns ``(etag, count)``."""

        def _txn(txn: Cursor) -> tuple[int, int]:
            sql = "DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?"
            args: list[object] = [user_id, version]
            if room_id is not None:
                sql += " AND room_id = ?"
                args.append(room_id)
                if session_id is not None:
                    sql += " AND session_id = ?"
                    args.append(session_id)
            txn.execute(sql, args)
            if txn.rowcount > 0:
                txn.execute("UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?",
                            (user_id, version))
            txn.execute("SELECT etag FROM e2e_room_keys_versions WHERE user_id = ? AND version = ?",
                        (user_id, version))
            row = txn.fetchone()
            return (int(row[0]) if row else 0), _count_txn(txn, user_id, version)

        return await self._db.run_interaction("delete_room_keys", _txn)


def _count_txn(txn: Cursor, user_id: str, version: int) -> int:
    txn.execute("SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = ? AND version = ?", (user_id, version))
    row = txn.fetchone()
    return int(row[0]) if row else 0
