"""Local accounts: users, devices, access tokens and refresh tokens.

Tokens are stored as sha256 digests: a leaked database does not leak
credentials, and lookups stay a single indexed equality.

Refresh tokens rotate: refreshing with token R creates R' (``R.next_token_id``)
and a new access token bound to R'.  R stays usable until R' or an access
token bound to R' is used (a client that lost the response can retry); then R
and the access tokens bound to it are deleted.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Optional, Sequence

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
    # A refreshable token that a request has used (its predecessor refresh token is revoked).
    used: bool = False


@attrs.frozen(slots=True)
class RefreshTokenInfo:
    token_id: int
    user_id: str
    device_id: str
    next_token_id: Optional[int]
    expiry_ts: Optional[int]
    ultimate_session_expiry_ts: Optional[int]


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


#: Told the cache keys a write made stale (None: all of them), so other processes can drop theirs.
InvalidationListener = Callable[[Optional[Sequence[str]]], None]


class UserStore:
    def __init__(self, db: Database, clock: Clock, cache_size: int = 50_000) -> None:
        self._db = db
        self._clock = clock
        self._cache: LruCache[str, UserInfo] = LruCache("users", cache_size)
        self._listeners: list[InvalidationListener] = []

    def invalidate_user(self, user_id: str) -> None:
        """Drop a cached user (replication applying another process's write; tells no listener)."""
        self._cache.invalidate(user_id)

    def invalidate_all(self) -> None:
        """Forget every cached user (replication missed invalidations; tells no listener)."""
        self._cache.clear()

    def add_invalidation_listener(self, listener: InvalidationListener) -> None:
        """Call ``listener(user_ids)`` after each write here changed users (the master announces it)."""
        self._listeners.append(listener)

    def _written(self, user_id: str) -> None:
        self._cache.invalidate(user_id)
        for listener in self._listeners:
            listener([user_id])

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
        self._written(user_id)

    async def set_deactivated(self, user_id: str, deactivated: bool) -> None:
        await self._db.execute("set_deactivated", "UPDATE users SET deactivated = ? WHERE name = ?",
                               deactivated, user_id)
        self._written(user_id)

    async def set_admin(self, user_id: str, admin: bool) -> None:
        await self._db.execute("set_admin", "UPDATE users SET admin = ? WHERE name = ?", admin, user_id)
        self._written(user_id)

    async def upgrade_guest(self, user_id: str, password_hash: Optional[str]) -> bool:
        """Turn a guest into a full user with a password; False if ``user_id`` is no guest."""
        changed = await self._db.run_interaction(
            "upgrade_guest", _update_rowcount,
            "UPDATE users SET is_guest = FALSE, password_hash = ? WHERE name = ? AND is_guest",
            (password_hash, user_id),
        )
        self._written(user_id)
        return changed > 0

    async def deactivate(self, user_id: str) -> None:
        """Mark deactivated and forget the password hash (nothing can log in as the user again)."""
        await self._db.execute(
            "deactivate_user", "UPDATE users SET deactivated = TRUE, password_hash = NULL WHERE name = ?", user_id
        )
        self._written(user_id)

    async def mark_erased(self, user_id: str) -> None:
        """Remember that the user asked for erasure when deactivating."""
        await self._db.execute(
            "mark_user_erased", "INSERT INTO erased_users (user_id) VALUES (?) ON CONFLICT (user_id) DO NOTHING",
            user_id,
        )

    async def is_erased(self, user_id: str) -> bool:
        rows = await self._db.execute("is_user_erased", "SELECT 1 FROM erased_users WHERE user_id = ?", user_id)
        return bool(rows)

    async def count_users(self) -> int:
        rows = await self._db.execute("count_users", "SELECT COUNT(*) FROM users")
        return int(rows[0][0])


class DeviceStore:
    """Devices; deleting one deletes its tokens in the same transaction.

    ``tokens`` (if given) has its access-token cache cleared after such a
    deletion, so a deleted device's cached token stops working at once.
    """

    def __init__(self, db: Database, clock: Clock, tokens: Optional["TokenStore"] = None) -> None:
        self._db = db
        self._clock = clock
        self._tokens = tokens

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
        if self._tokens is not None:
            self._tokens.tokens_deleted(None)


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
        self._listeners: list[InvalidationListener] = []

    def add_invalidation_listener(self, listener: InvalidationListener) -> None:
        """Call ``listener(token_hashes)`` (None: every token) after a write here made cached tokens stale."""
        self._listeners.append(listener)

    def invalidate_hashes(self, token_hashes: Sequence[str]) -> None:
        """Drop cached tokens by hash (replication applying another process's write; tells no listener)."""
        self._cache.invalidate_many(token_hashes)

    def tokens_deleted(self, token_hashes: Optional[Sequence[str]]) -> None:
        """Tokens were deleted or changed by a write (None: unknown which): drop them here, tell listeners."""
        if token_hashes is None:
            self._cache.clear()
        else:
            self._cache.invalidate_many(token_hashes)
        for listener in self._listeners:
            listener(None if token_hashes is None else list(token_hashes))

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
        self._cache.invalidate(th)  # a cached "no such token" (the hash is new: nothing to tell)
        return token_id

    async def get_token(self, token: str) -> Optional[TokenInfo]:
        th = hash_token(token)
        cached = self._cache.get(th)
        if cached is not None:
            return cached
        rows = await self._db.execute(
            "get_access_token",
            "SELECT id, user_id, device_id, valid_until_ms, refresh_token_id, puppets_user_id, used"
            " FROM access_tokens WHERE token_hash = ?",
            th,
        )
        info = None
        if rows:
            r = rows[0]
            info = TokenInfo(int(r[0]), r[1], r[2], _opt_int(r[3]), _opt_int(r[4]), r[5], bool(r[6]))
        if info is not None:
            self._cache.set(th, info)
        return info

    async def delete_token(self, token: str) -> None:
        th = hash_token(token)
        await self._db.execute("delete_access_token", "DELETE FROM access_tokens WHERE token_hash = ?", th)
        self.tokens_deleted([th])

    async def delete_token_by_id(self, token_id: int) -> None:
        await self._db.execute("delete_access_token_by_id", "DELETE FROM access_tokens WHERE id = ?", token_id)
        self.tokens_deleted(None)

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
        self.tokens_deleted(None)
        return rows

    def next_refresh_id_txn(self, txn: Cursor) -> int:
        return self._refresh_ids.next_id_txn(txn)

    def invalidate_all(self) -> None:
        """Forget every cached token (replication applying another process's write; tells no listener)."""
        self._cache.clear()

    # -- refresh tokens -----------------------------------------------------------

    async def add_refresh_token(self, user_id: str, device_id: str, token: str, *, expiry_ts: Optional[int],
                                ultimate_session_expiry_ts: Optional[int]) -> int:
        def _txn(txn: Cursor) -> int:
            token_id = self._refresh_ids.next_id_txn(txn)
            txn.execute(
                "INSERT INTO refresh_tokens (id, user_id, device_id, token_hash, expiry_ts,"
                " ultimate_session_expiry_ts) VALUES (?, ?, ?, ?, ?, ?)",
                (token_id, user_id, device_id, hash_token(token), expiry_ts, ultimate_session_expiry_ts),
            )
            return token_id

        return await self._db.run_interaction("add_refresh_token", _txn)

    async def get_refresh_token(self, token: str) -> Optional[RefreshTokenInfo]:
        rows = await self._db.execute(
            "get_refresh_token",
            "SELECT id, user_id, device_id, next_token_id, expiry_ts, ultimate_session_expiry_ts"
            " FROM refresh_tokens WHERE token_hash = ?",
            hash_token(token),
        )
        if not rows:
            return None
        r = rows[0]
        return RefreshTokenInfo(int(r[0]), r[1], r[2], _opt_int(r[3]), _opt_int(r[4]), _opt_int(r[5]))

    async def rotate_refresh_token(
        self, old: RefreshTokenInfo, new_refresh_token: str, new_access_token: str, *,
        refresh_expiry_ts: Optional[int], access_valid_until_ms: Optional[int],
    ) -> Optional[int]:
        """Replace ``old`` by a new refresh token and a new access token bound to it.

        Revokes ``old``'s predecessor (using ``old`` proves the client has it)
        and any successor of ``old`` that was never used (the client is
        retrying a refresh whose response it lost).  Returns the new refresh
        token id, or None if ``old`` is gone or its successor was already used
        (``old`` is revoked then).
        """
        def _txn(txn: Cursor) -> tuple[Optional[int], list[str]]:
            txn.execute("SELECT next_token_id FROM refresh_tokens WHERE id = ?", (old.token_id,))
            row = txn.fetchone()
            if row is None:
                return None, []
            hashes: list[str] = []
            successor = _opt_int(row[0])
            if successor is not None:
                txn.execute("SELECT COUNT(*) FROM refresh_tokens WHERE id = ? AND next_token_id IS NOT NULL",
                            (successor,))
                successor_refreshed = int(_first(txn)) > 0
                txn.execute("SELECT COUNT(*) FROM access_tokens WHERE refresh_token_id = ? AND used", (successor,))
                if successor_refreshed or int(_first(txn)) > 0:
                    return None, []
                hashes += _delete_refresh_tokens_txn(txn, [successor])
            txn.execute("SELECT id FROM refresh_tokens WHERE next_token_id = ?", (old.token_id,))
            hashes += _delete_refresh_tokens_txn(txn, [int(r[0]) for r in txn.fetchall()])
            new_id = self._refresh_ids.next_id_txn(txn)
            txn.execute(
                "INSERT INTO refresh_tokens (id, user_id, device_id, token_hash, expiry_ts,"
                " ultimate_session_expiry_ts) VALUES (?, ?, ?, ?, ?, ?)",
                (new_id, old.user_id, old.device_id, hash_token(new_refresh_token), refresh_expiry_ts,
                 old.ultimate_session_expiry_ts),
            )
            txn.execute("UPDATE refresh_tokens SET next_token_id = ? WHERE id = ?", (new_id, old.token_id))
            txn.execute(
                "INSERT INTO access_tokens (id, user_id, device_id, token_hash, valid_until_ms, refresh_token_id)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (self._ids.next_id_txn(txn), old.user_id, old.device_id, hash_token(new_access_token),
                 access_valid_until_ms, new_id),
            )
            return new_id, hashes

        new_id, hashes = await self._db.run_interaction("rotate_refresh_token", _txn)
        if hashes:
            self.tokens_deleted(hashes)
        return new_id

    async def mark_token_used(self, token: str, info: TokenInfo) -> None:
        """First use of a refreshable access token: revoke the refresh token it replaced."""
        if info.used or info.refresh_token_id is None:
            return
        refresh_id = info.refresh_token_id

        def _txn(txn: Cursor) -> list[str]:
            txn.execute("UPDATE access_tokens SET used = TRUE WHERE id = ?", (info.token_id,))
            txn.execute("SELECT id FROM refresh_tokens WHERE next_token_id = ?", (refresh_id,))
            return _delete_refresh_tokens_txn(txn, [int(r[0]) for r in txn.fetchall()])

        hashes = await self._db.run_interaction("mark_token_used", _txn)
        self.tokens_deleted([*hashes, hash_token(token)])

    async def delete_refresh_tokens_for_user(self, user_id: str, device_id: Optional[str] = None) -> None:
        clause, args = ("user_id = ?", (user_id,)) if device_id is None else (
            "user_id = ? AND device_id = ?", (user_id, device_id))
        await self._db.execute("delete_refresh_tokens", f"DELETE FROM refresh_tokens WHERE {clause}", *args)


def _first(txn: Cursor) -> Any:
    row = txn.fetchone()
    assert row is not None
    return row[0]


def _opt_int(value: Any) -> Optional[int]:
    return None if value is None else int(value)


def _delete_refresh_tokens_txn(txn: Cursor, refresh_ids: list[int]) -> list[str]:
    """Delete refresh tokens and the access tokens bound to them; returns those access tokens' hashes."""
    hashes: list[str] = []
    for rid in refresh_ids:
        txn.execute("SELECT token_hash FROM access_tokens WHERE refresh_token_id = ?", (rid,))
        hashes += [r[0] for r in txn.fetchall()]
        txn.execute("DELETE FROM access_tokens WHERE refresh_token_id = ?", (rid,))
        txn.execute("DELETE FROM refresh_tokens WHERE id = ?", (rid,))
    return hashes
