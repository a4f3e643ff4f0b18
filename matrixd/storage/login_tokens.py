"""Single-use ``m.login.token`` tokens, stored as sha256 digests."""

from __future__ import annotations

from typing import Optional

from matrixd.storage.accounts import hash_token
from matrixd.storage.database import Cursor, Database
from matrixd.util.clock import Clock


class LoginTokenStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add_login_token(self, token: str, user_id: str, expiry_ts: int) -> None:
        await self._db.execute(
            "add_login_token", "INSERT INTO login_tokens (token_hash, user_id, expiry_ts) VALUES (?, ?, ?)",
            hash_token(token), user_id, expiry_ts,
        )

    async def consume_login_token(self, token: str) -> Optional[str]:
        """The user the token logs in, deleting it; None if unknown, used or expired.

        Deleting in the same transaction that reads makes the token single-use
        even under concurrent logins.
        """
        th = hash_token(token)
        now = self._clock.time_msec()

        def _txn(txn: Cursor) -> Optional[str]:
            txn.execute("SELECT user_id, expiry_ts FROM login_tokens WHERE token_hash = ?", (th,))
            row = txn.fetchone()
            if row is None:
                return None
            txn.execute("DELETE FROM login_tokens WHERE token_hash = ?", (th,))
            if txn.rowcount != 1 or int(row[1]) < now:
                return None
            user_id: str = row[0]
            return user_id

        return await self._db.run_interaction("consume_login_token", _txn)

    async def delete_expired(self) -> None:
        await self._db.execute(
            "delete_expired_login_tokens", "DELETE FROM login_tokens WHERE expiry_ts < ?", self._clock.time_msec()
        )

    async def delete_for_user(self, user_id: str) -> None:
        await self._db.execute("delete_login_tokens_for_user", "DELETE FROM login_tokens WHERE user_id = ?", user_id)
