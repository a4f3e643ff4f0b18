"""Password policy, hashing and checking.

bcrypt is deliberately slow, so it runs on the reactor's thread pool and never
blocks the reactor (the test reactor's pool runs it inline).  Passwords are
NFKC-normalised first so the same password typed on different keyboards
matches.
"""

from __future__ import annotations

import logging
import unicodedata
from typing import Any, Optional

import bcrypt
from twisted.internet.threads import deferToThreadPool

from matrixd.api.errors import Codes, MatrixError
from matrixd.config.registration import PasswordConfig

logger = logging.getLogger(__name__)

#: Longer passwords are refused outright (bcrypt reads 72 bytes; this bounds the work anyway).
MAX_PASSWORD_LENGTH = 512


class PasswordHasher:
    def __init__(self, reactor: Any, rounds: int, policy: PasswordConfig) -> None:
        self._reactor = reactor
        self._rounds = rounds
        self._policy = policy

    @property
    def enabled(self) -> bool:
        """Whether passwords may be used at all (``password_config.enabled``)."""
        return self._policy.enabled

    def validate_new_password(self, password: object) -> str:
        """A password a user wants to set, checked against the policy; raises a 400 otherwise."""
        if not isinstance(password, str):
            raise MatrixError(400, "password must be a string", Codes.BAD_JSON)
        _check_shape(password)
        p = self._policy
        if len(password) < p.minimum_length:
            raise MatrixError(400, f"Password must be at least {p.minimum_length} characters long",
                              Codes.PASSWORD_TOO_SHORT)
        missing = [
            what for what, required, present in (
                ("a digit", p.require_digit, any(c.isdigit() for c in password)),
                ("a symbol", p.require_symbol, any(not c.isalnum() for c in password)),
                ("a lowercase letter", p.require_lowercase, any(c.islower() for c in password)),
                ("an uppercase letter", p.require_uppercase, any(c.isupper() for c in password)),
            ) if required and not present
        ]
        if missing:
            raise MatrixError(400, "Password must contain " + ", ".join(missing), Codes.WEAK_PASSWORD)
        return password

    async def hash(self, password: str) -> str:
        _check_shape(password)
        data = _normalise(password)
        rounds = self._rounds

        def _hash() -> str:
            return bcrypt.hashpw(data, bcrypt.gensalt(rounds)).decode("ascii")

        result: str = await deferToThreadPool(self._reactor, self._reactor.getThreadPool(), _hash)
        return result

    async def check(self, password: str, stored_hash: Optional[str]) -> bool:
        """Whether ``password`` matches ``stored_hash`` (False for no hash or a malformed one)."""
        if not stored_hash or not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
            return False
        if "\x00" in password:
            return False
        data = _normalise(password)

        def _check() -> bool:
            try:
                return bool(bcrypt.checkpw(data, stored_hash.encode("ascii")))
            except ValueError:
                logger.warning("stored password hash is not a bcrypt hash")
                return False

        ok: bool = await deferToThreadPool(self._reactor, self._reactor.getThreadPool(), _check)
        return ok


def _check_shape(password: str) -> None:
    if len(password) > MAX_PASSWORD_LENGTH:
        raise MatrixError(400, f"Password must be at most {MAX_PASSWORD_LENGTH} characters", Codes.INVALID_PARAM)
    if "\x00" in password:
        raise MatrixError(400, "Password must not contain NUL characters", Codes.INVALID_PARAM)


def _normalise(password: str) -> bytes:
    return unicodedata.normalize("NFKC", password).encode("utf-8")
