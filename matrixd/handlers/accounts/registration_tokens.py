"""Administering registration tokens (the ``/_synapse/admin/v1/registration_tokens`` API).

Tokens use the opaque identifier grammar (``A-Z a-z 0-9 . _ ~ -``, at most 64
characters); ``uses_allowed`` is a non-negative integer or null (unlimited);
``expiry_time`` is milliseconds since the epoch, in the future, or null.
"""

from __future__ import annotations

import re
import secrets
import string
from typing import Any, Optional

from matrixd.api.errors import Codes, MatrixError, NotFoundError
from matrixd.storage.registration_tokens import RegistrationToken, RegistrationTokenStore
from matrixd.types import JsonDict
from matrixd.util.clock import Clock

MAX_TOKEN_LENGTH = 64
_TOKEN_RE = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
_ALPHABET = string.ascii_letters + string.digits + "._~-"


def _invalid(msg: str) -> MatrixError:
    return MatrixError(400, msg, Codes.INVALID_PARAM)


class RegistrationTokenAdmin:
    def __init__(self, clock: Clock, store: RegistrationTokenStore) -> None:
        self._clock = clock
        self._store = store

    def _uses_allowed(self, value: Any) -> Optional[int]:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _invalid("uses_allowed must be a non-negative integer or null")
        return value

    def _expiry_time(self, value: Any) -> Optional[int]:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < self._clock.time_msec():
            raise _invalid("expiry_time must be an integer time in the future (ms since the epoch) or null")
        return value

    async def create(self, body: JsonDict) -> RegistrationToken:
        uses_allowed = self._uses_allowed(body.get("uses_allowed"))
        expiry_time = self._expiry_time(body.get("expiry_time"))
        token = body.get("token")
        if token is not None:
            if not isinstance(token, str) or not _TOKEN_RE.match(token):
                raise _invalid(f"token must be 1-{MAX_TOKEN_LENGTH} characters of A-Z, a-z, 0-9, '.', '_', '~', '-'")
            if not await self._store.create_token(token, uses_allowed, expiry_time):
                raise _invalid(f"Token already exists: {token}")
        else:
            length = body.get("length", 16)
            if isinstance(length, bool) or not isinstance(length, int) or not 0 < length <= MAX_TOKEN_LENGTH:
                raise _invalid(f"length must be an integer between 1 and {MAX_TOKEN_LENGTH}")
            for _ in range(10):
                token = "".join(secrets.choice(_ALPHABET) for _ in range(length))
                if await self._store.create_token(token, uses_allowed, expiry_time):
                    break
            else:
                raise MatrixError(500, "Could not generate an unused token", Codes.UNKNOWN)
        created = await self._store.get_token(token)
        assert created is not None
        return created

    async def get(self, token: str) -> RegistrationToken:
        found = await self._store.get_token(token)
        if found is None:
            raise NotFoundError(f"No such registration token: {token}")
        return found

    async def list(self, valid: Optional[bool]) -> list[RegistrationToken]:
        return await self._store.list_tokens(valid)

    async def update(self, token: str, body: JsonDict) -> RegistrationToken:
        changes: JsonDict = {}
        if "uses_allowed" in body:
            changes["uses_allowed"] = self._uses_allowed(body["uses_allowed"])
        if "expiry_time" in body:
            changes["expiry_time"] = self._expiry_time(body["expiry_time"])
        updated = await self._store.update_token(token, changes)
        if updated is None:
            raise NotFoundError(f"No such registration token: {token}")
        return updated

    async def delete(self, token: str) -> None:
        if not await self._store.delete_token(token):
            raise NotFoundError(f"No such registration token: {token}")
