"""Local accounts: users, devices and access tokens.

Tokens are stored as sha256 digests: a leaked database does not leak
credentials, and lookups stay a single indexed equality.
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional

import attrs

from matrixd.storage.cache import LruCache
from matrixd.storage.database import Cursor, Database
from matrixd.storage.sequences import get_sequence_generator
from matrixd.util.clock import Clock


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@attrs.frozen(slots=True)
class UserInfo:
    user_id: str
    password_hash: Optional[str]
    creation_ts: int
    admin: bool
    is_guest: bool
    deactivated: bool
    user_type: Optional[str]
    appservice_id: Optional[str]
    shadow_banned: bool
    locked: bool
    suspended: bool


@attrs.frozen(slots=True)
class TokenInfo:
    token_id: int
    user_id: str
    device_id: Optional[str]
    valid_until_ms: Optional[int]
    refresh_token_id: Optional[int]
    puppets_user_id: Optional[str]


@attrs.frozen(slots=True)
class DeviceInfo:
    user_id: str
    device_id: str
    display_name: Optional[str]
    last_seen_ts: Optional[int]
    last_seen_ip: Optional[str]
    last_seen_user_agent: Optional[str]


_USER_COLUMNS = ("name, password_hash, creation_ts, admin, is_guest, deactivated, user_type, appservice_id,"
                 " shadow_banned, locked, suspended")


def _user(row: tuple[Any, ...]) -> UserInfo:
    return UserInfo(row[0], row[1], int(row[2]), bool(row[3]), bool(row[4]), bool(row[5]), row[6], row[7],
                    bool(row[8]), bool(row[9]), bool(row[10]))


class UserStore:
    def __init__(self, db: Database, clock: Clock, cache_size: int = 50_000) -> None:
        self._db = db
        self._clock = clock
        self._cache: LruCache[str, UserInfo] = LruCache("users", cache_size)

    def invalidate_user(self, user_id: str) -> None:
        self._cache.invalidate(user_id)

    async def create_user(self, user_id: str, password_hash: Optional[str], *, admin: bool = False,
                          is_guest: bool = False, user_type: Optional[str] = None,
                          appservice_id: Optional[str] = None) -> bool:
        """Insert a user; False if the id is taken (nothing changed)."""
        def _txn(txn: Cursor) -> bool:
            txn.execute(
                "INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, user_type, appservice_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (user_id, password_hash, self._clock.time_msec(), admin, is_guest, user_type, appservice_id),
            )
            return txn.rowcount == 1

        return await self._db.run_interaction("create_user", _txn)

    async def get_user(self, user_id: str) -> Optional[UserInfo]:
        cached = self._cache.get(user_id)
        if cached is not None:
            return cached
        rows = await self._db.execute("get_user", f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", user_id)
        if not rows:
            return None
        info = _user(rows[0])
        self._cache.set(user_id, info)
        return info

    async def get_user_case_insensitive(self, user_id: str) -> list[str]:
        rows = await self._db.execute(
            "get_user_ci", "SELECT name FROM users WHERE lower(name) = lower(?)", user_id
        )
        return [r[0] for r in rows]

    async def set_password_hash(self, user_id: str, password_hash: Optional[str]) -> None:
        await self._db.execute("set_password_hash", "UPDATE users SET password_hash = ? WHERE name = ?",
                               password_hash, user_id)
        self._cache.invalidate(user_id)

    async def set_deactivated(self, user_id: str, deactivated: bool) -> None:
        await self._db.execute("set_deactivated", "UPDATE users SET deactivated = ? WHERE name = ?",
                               deactivated, user_id)
        self._cache.invalidate(user_id)

    async def set_admin(self, user_id: str, admin: bool) -> None:
        await self._db.execute("set_admin", "UPDATE users SET admin = ? WHERE name = ?", admin, user_id)
        self._cache.invalidate(user_id)

    async def count_users(self) -> int:
        rows = await self._db.execute("count_users", "SELECT COUNT(*) FROM users")
        return int(rows[0][0])


class DeviceStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def store_device(self, user_id: str, device_id: str, display_name: Optional[str]) -> bool:
        """Create the device if new (True) or leave it as it is (False)."""
        def _txn(txn: Cursor) -> bool:
            txn.execute(
                "INSERT INTO devices (user_id, device_id, display_name, last_seen_ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id, device_id) DO NOTHING",
                (user_id, device_id, display_name, self._clock.time_msec()),
            )
            return txn.rowcount == 1

        return await self._db.run_interaction("store_device", _txn)

    async def get_device(self, user_id: str, device_id: str) -> Optional[DeviceInfo]:
        rows = await self._db.execute(
            "get_device",
            "SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip, last_seen_user_agent"
            " FROM devices WHERE user_id = ? AND device_id = ? AND NOT hidden",
            user_id, device_id,
        )
        return DeviceInfo(*rows[0]) if rows else None

    async def get_devices(self, user_id: str) -> list[DeviceInfo]:
        rows = await self._db.execute(
            "get_devices",
            "SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip, last_seen_user_agent"
            " FROM devices WHERE user_id = ? AND NOT hidden ORDER BY device_id",
            user_id,
        )
        return [DeviceInfo(*r) for r in rows]

    async def update_display_name(self, user_id: str, device_id: str, display_name: Optional[str]) -> bool:
        rows = await self._db.run_interaction(
            "update_device_name", _update_rowcount,
            "UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
            (display_name, user_id, device_id),
        )
        return rows > 0

    async def record_last_seen(self, user_id: str, device_id: str, ip: Optional[str],
                               user_agent: Optional[str]) -> None:
        await self._db.execute(
            "device_last_seen",
            "UPDATE devices SET last_seen_ts = ?, last_seen_ip = ?, last_seen_user_agent = ?"
            " WHERE user_id = ? AND device_id = ?",
            self._clock.time_msec(), ip, user_agent, user_id, device_id,
        )

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Delete devices and every access/refresh token bound to them."""
        def _txn(txn: Cursor) -> None:
            for device_id in device_ids:
                txn.execute("DELETE FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id))
                txn.execute("DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?", (user_id, device_id))
                txn.execute("DELETE FROM refresh_tokens WHERE user_id = ? AND device_id = ?", (user_id, device_id))

        await self._db.run_interaction("delete_devices", _txn)


def _update_rowcount(txn: Cursor, sql: str, args: tuple[Any, ...]) -> int:
    txn.execute(sql, args)
    return txn.rowcount


class TokenStore:
    """Access tokens (with a small cache: every authenticated request looks one up)."""

    def __init__(self, db: Database, clock: Clock, cache_size: int = 50_000) -> None:
        self._db = db
        self._clock = clock
        self._ids = get_sequence_generator(db, "access_token_id_seq", "access_tokens", "id")
        self._refresh_ids = get_sequence_generator(db, "refresh_token_id_seq", "refresh_tokens", "id")
        self._cache: LruCache[str, Optional[TokenInfo]] = LruCache("access_tokens", cache_size)

    async def add_access_token(self, user_id: str, device_id: Optional[str], token: str, *,
                               valid_until_ms: Optional[int] = None, refresh_token_id: Optional[int] = None,
                               puppets_user_id: Optional[str] = None) -> int:
        th = hash_token(token)

        def _txn(txn: Cursor) -> int:
            token_id = self._ids.next_id_txn(txn)
            txn.execute(
                "INSERT INTO access_tokens (id, user_id, device_id, token_hash, valid_until_ms, refresh_token_id,"
                " puppets_user_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_id, user_id, device_id, th, valid_until_ms, refresh_token_id, puppets_user_id),
            )
            return token_id

        token_id = await self._db.run_interaction("add_access_token", _txn)
        self._cache.invalidate(th)
        return token_id

    async def get_token(self, token: str) -> Optional[TokenInfo]:
        th = hash_token(token)
        cached = self._cache.get(th)
        if cached is not None:
            return cached
        rows = await self._db.execute(
            "get_access_token",
            "SELECT id, user_id, device_id, valid_until_ms, refresh_token_id, puppets_user_id"
            " FROM access_tokens WHERE token_hash = ?",
            th,
        )
        info = TokenInfo(int(rows[0][0]), *rows[0][1:]) if rows else None
        if info is not None:
            self._cache.set(th, info)
        return info

    async def delete_token(self, token: str) -> None:
        th = hash_token(token)
        await self._db.execute("delete_access_token", "DELETE FROM access_tokens WHERE token_hash = ?", th)
        self._cache.invalidate(th)

    async def delete_tokens_for_user(self, user_id: str, except_token_id: Optional[int] = None,
                                     device_id: Optional[str] = None) -> list[tuple[int, Optional[str]]]:
        """Delete a user's tokens (optionally one device's, optionally keeping one); returns (id, device)."""
        def _txn(txn: Cursor) -> list[tuple[int, Optional[str]]]:
            clause = "user_id = ?"
            args: list[object] = [user_id]
            if device_id is not None:
                clause += " AND device_id = ?"
                args.append(device_id)
            if except_token_id is not None:
                clause += " AND id != ?"
                args.append(except_token_id)
            txn.execute(f"SELECT id, device_id FROM access_tokens WHERE {clause}", args)
            rows = [(int(r[0]), r[1]) for r in txn.fetchall()]
            txn.execute(f"DELETE FROM access_tokens WHERE {clause}", args)
            return rows

        rows = await self._db.run_interaction("delete_tokens_for_user", _txn)
        self._cache.clear()
        return rows

    def next_refresh_id_txn(self, txn: Cursor) -> int:
        return self._refresh_ids.next_id_txn(txn)
