"""Registration tokens (``m.login.registration_token``) and their use counts.

A token is valid while it has not expired and ``pending + completed`` is
below ``uses_allowed``.  Completing the UIA stage reserves a use (``pending``);
creating the account turns it into ``completed``; an abandoned session gives it
back.  Every change is one conditional UPDATE, so concurrent registrations
cannot overspend a token.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.types import JsonDict
from matrixd.util.clock import Clock

_COLUMNS = "token, uses_allowed, pending, completed, expiry_time"
_VALID = "(uses_allowed IS NULL OR pending + completed < uses_allowed) AND (expiry_time IS NULL OR expiry_time > ?)"


@attrs.frozen(slots=True)
class RegistrationToken:
    token: str
    uses_allowed: Optional[int]
    pending: int
    completed: int
    expiry_time: Optional[int]

    def to_json(self) -> JsonDict:
        return attrs.asdict(self)


def _token(row: tuple[Any, ...]) -> RegistrationToken:
    return RegistrationToken(
        row[0], None if row[1] is None else int(row[1]), int(row[2]), int(row[3]),
        None if row[4] is None else int(row[4]),
    )


class RegistrationTokenStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create_token(self, token: str, uses_allowed: Optional[int], expiry_time: Optional[int]) -> bool:
        """Add a token; False if it exists already (nothing changed)."""
        def _txn(txn: Cursor) -> bool:
            txn.execute(
                "INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES (?, ?, ?)"
                " ON CONFLICT (token) DO NOTHING",
                (token, uses_allowed, expiry_time),
            )
            return txn.rowcount == 1

        return await self._db.run_interaction("create_registration_token", _txn)

    async def get_token(self, token: str) -> Optional[RegistrationToken]:
        rows = await self._db.execute(
            "get_registration_token", f"SELECT {_COLUMNS} FROM registration_tokens WHERE token = ?", token
        )
        return _token(rows[0]) if rows else None

    async def list_tokens(self, valid: Optional[bool] = None) -> list[RegistrationToken]:
        """All tokens, or only the (in)valid ones, sorted by token."""
        where, args = "", []
        if valid is True:
            where, args = f" WHERE {_VALID}", [self._clock.time_msec()]
        elif valid is False:
            where, args = f" WHERE NOT ({_VALID})", [self._clock.time_msec()]
        rows = await self._db.execute(
            "list_registration_tokens", f"SELECT {_COLUMNS} FROM registration_tokens{where} ORDER BY token", *args
        )
        return [_token(r) for r in rows]

    async def update_token(self, token: str, changes: JsonDict) -> Optional[RegistrationToken]:
        """Set ``uses_allowed`` and/or ``expiry_time``; None if the token does not exist."""
        def _txn(txn: Cursor) -> Optional[RegistrationToken]:
            for column in ("uses_allowed", "expiry_time"):
                if column in changes:
                    txn.execute(f"UPDATE registration_tokens SET {column} = ? WHERE token = ?",
                                (changes[column], token))
            txn.execute(f"SELECT {_COLUMNS} FROM registration_tokens WHERE token = ?", (token,))
            row = txn.fetchone()
            return _token(row) if row is not None else None

        return await self._db.run_interaction("update_registration_token", _txn)

    async def delete_token(self, token: str) -> bool:
        def _txn(txn: Cursor) -> bool:
            txn.execute("DELETE FROM registration_tokens WHERE token = ?", (token,))
            return txn.rowcount == 1

        return await self._db.run_interaction("delete_registration_token", _txn)

    async def is_valid(self, token: str) -> bool:
        rows = await self._db.execute(
            "registration_token_valid", f"SELECT 1 FROM registration_tokens WHERE token = ? AND {_VALID}",
            token, self._clock.time_msec(),
        )
        return bool(rows)

    async def reserve_use(self, token: str) -> bool:
        """Count a pending use if the token is valid now; False (nothing changed) otherwise."""
        def _txn(txn: Cursor) -> bool:
            txn.execute(f"UPDATE registration_tokens SET pending = pending + 1 WHERE token = ? AND {_VALID}",
                        (token, self._clock.time_msec()))
            return txn.rowcount == 1

        return await self._db.run_interaction("reserve_registration_token", _txn)

    async def complete_use(self, token: str) -> None:
        """A pending use became an account."""
        await self._db.execute(
            "complete_registration_token",
            "UPDATE registration_tokens SET pending = pending - 1, completed = completed + 1"
            " WHERE token = ? AND pending > 0",
            token,
        )

    async def release_use(self, token: str) -> None:
        """A pending use was abandoned (its session expired or registration failed)."""
        await self._db.execute(
            "release_registration_token",
            "UPDATE registration_tokens SET pending = pending - 1 WHERE token = ? AND pending > 0",
            token,
        )
