"""Checking ``m.login.password`` credentials, shared by ``POST /login`` and the
user-interactive auth password stage.

One answer, 403 ``M_FORBIDDEN`` "Invalid username or password", for unknown
users, wrong passwords and users without a password, so the endpoint does not
reveal which accounts exist.  Failed attempts count against
``rc_login.failed_attempts`` per account.
"""

from __future__ import annotations

from typing import Optional

from matrixd.api.errors import Codes, LimitExceededError, MatrixError
from matrixd.handlers.accounts.passwords import PasswordHasher
from matrixd.handlers.ratelimit import Ratelimiter
from matrixd.storage.accounts import UserStore
from matrixd.types import IdentifierError, JsonDict, UserID

INVALID_CREDENTIALS = "Invalid username or password"


def identifier_from_body(body: JsonDict) -> JsonDict:
    """The ``identifier`` of a login/auth dict, built from the deprecated ``user``/``medium`` keys if absent."""
    identifier = body.get("identifier")
    if identifier is None:
        if "user" in body:
            identifier = {"type": "m.id.user", "user": body["user"]}
        elif "medium" in body and "address" in body:
            identifier = {"type": "m.id.thirdparty", "medium": body["medium"], "address": body["address"]}
        else:
            raise MatrixError(400, "Missing 'identifier'", Codes.MISSING_PARAM)
    if not isinstance(identifier, dict):
        raise MatrixError(400, "'identifier' must be an object", Codes.BAD_JSON)
    return identifier


class PasswordAuthenticator:
    def __init__(self, server_name: str, users: UserStore, hasher: PasswordHasher,
                 failed_attempts: Ratelimiter) -> None:
        self._server_name = server_name
        self._users = users
        self._hasher = hasher
        self._failed = failed_attempts

    def qualify(self, identifier: JsonDict) -> str:
        """The full user id an ``m.id.user`` identifier names (not yet looked up).

        Raises:
            MatrixError: 400 for a malformed identifier; 403 for third-party
                identifiers (this server binds none) and users of other servers.
        """
        id_type = identifier.get("type")
        if id_type in ("m.id.thirdparty", "m.id.phone"):
            raise MatrixError(403, "No third-party identifiers are bound to accounts on this server",
                              Codes.FORBIDDEN)
        if id_type != "m.id.user":
            raise MatrixError(400, f"Unknown identifier type {id_type!r}", Codes.UNKNOWN)
        user = identifier.get("user")
        if not isinstance(user, str) or not user:
            raise MatrixError(400, "identifier.user must be a non-empty string", Codes.INVALID_PARAM)
        if not user.startswith("@"):
            user = f"@{user}:{self._server_name}"
        try:
            parsed = UserID.from_string(user)
        except IdentifierError:
            raise MatrixError(403, INVALID_CREDENTIALS, Codes.FORBIDDEN) from None
        if parsed.domain != self._server_name:
            raise MatrixError(403, INVALID_CREDENTIALS, Codes.FORBIDDEN)
        return user

    async def resolve_user(self, user_id: str) -> Optional[str]:
        """The existing user ``user_id`` means: exact match, else the only case-insensitive match."""
        if await self._users.get_user(user_id) is not None:
            return user_id
        matches = await self._users.get_user_case_insensitive(user_id)
        return matches[0] if len(matches) == 1 else None

    async def check(self, body: JsonDict) -> str:
        """Validate an ``m.login.password`` dict; returns the canonical user id.

        Raises:
            MatrixError: 400 malformed, 403 wrong credentials, 403
                ``M_USER_DEACTIVATED``, 429 after too many failures.
        """
        if not self._hasher.enabled:
            raise MatrixError(400, "Password login is disabled on this server", Codes.UNKNOWN)
        qualified = self.qualify(identifier_from_body(body))
        password = body.get("password")
        if not isinstance(password, str):
            raise MatrixError(400, "'password' must be a string", Codes.MISSING_PARAM
                              if password is None else Codes.BAD_JSON)
        key = qualified.lower()
        allowed, wait = self._failed.can_do_action(key, update=False)
        if not allowed:
            raise LimitExceededError(retry_after_ms=int(wait * 1000) + 1)
        user_id = await self.resolve_user(qualified)
        info = await self._users.get_user(user_id) if user_id is not None else None
        if info is None or not await self._hasher.check(password, info.password_hash):
            self._failed.can_do_action(key)
            raise MatrixError(403, INVALID_CREDENTIALS, Codes.FORBIDDEN)
        if info.deactivated:
            raise MatrixError(403, "This account has been deactivated", Codes.USER_DEACTIVATED)
        return info.user_id
