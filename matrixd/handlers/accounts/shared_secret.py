"""Shared-secret registration (``/_synapse/admin/v1/register``), for bootstrapping
admins and scripting accounts without UIA.

The protocol is Synapse's documented one, so its ``register_new_matrix_user``
and ours interoperate: ``GET`` hands out a nonce; ``POST`` carries the nonce,
the account fields and ``mac`` = hex HMAC-SHA1 keyed with
``registration_shared_secret`` over ``nonce NUL username NUL password NUL
("admin" | "notadmin") [NUL user_type]``.  A nonce is good for one attempt
(consumed even when the MAC is wrong) and for 60 seconds.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from typing import Optional

from matrixd.api.errors import Codes, MatrixError
# The client side of the MAC lives with the (standard-library-only) command; one definition for both.
from matrixd.cli.register_new_matrix_user import compute_mac
from matrixd.handlers.accounts.passwords import PasswordHasher
from matrixd.handlers.accounts.register import USER_TYPES, RegistrationHandler
from matrixd.handlers.accounts.sessions import SessionHandler
from matrixd.types import JsonDict
from matrixd.util.clock import Clock

NONCE_LIFETIME_MS = 60_000
_MAX_NONCES = 10_000




def _string(body: JsonDict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or "\x00" in value:
        raise MatrixError(400, f"Invalid {key}", Codes.INVALID_PARAM if key in body else Codes.MISSING_PARAM)
    return value


class SharedSecretRegistration:
    def __init__(self, clock: Clock, secret: Optional[str], registration: RegistrationHandler,
                 hasher: PasswordHasher, sessions: SessionHandler) -> None:
        self._clock = clock
        self._secret = secret
        self._registration = registration
        self._hasher = hasher
        self._sessions = sessions
        # nonce -> expiry (ms); insertion-ordered so the oldest are dropped first.
        self._nonces: OrderedDict[str, int] = OrderedDict()

    def _require_enabled(self) -> str:
        if not self._secret:
            raise MatrixError(400, "Shared secret registration is not enabled", Codes.UNKNOWN)
        return self._secret

    def new_nonce(self) -> str:
        self._require_enabled()
        now = self._clock.time_msec()
        self._expire(now)
        while len(self._nonces) >= _MAX_NONCES:
            self._nonces.popitem(last=False)
        nonce = secrets.token_hex(32)
        self._nonces[nonce] = now + NONCE_LIFETIME_MS
        return nonce

    def _expire(self, now: int) -> None:
        while self._nonces:
            nonce, expiry = next(iter(self._nonces.items()))
            if expiry > now:
                break
            del self._nonces[nonce]

    async def register(self, body: JsonDict) -> JsonDict:
        secret = self._require_enabled()
        nonce = body.get("nonce")
        if not isinstance(nonce, str):
            raise MatrixError(400, "nonce must be specified", Codes.MISSING_PARAM)
        self._expire(self._clock.time_msec())
        if self._nonces.pop(nonce, None) is None:
            raise MatrixError(400, "unrecognised nonce", Codes.UNKNOWN)

        username = _string(body, "username")
        password = _string(body, "password")
        admin = body.get("admin", False)
        if not isinstance(admin, bool):
            raise MatrixError(400, "admin must be a boolean", Codes.BAD_JSON)
        user_type = body.get("user_type")
        if user_type is not None and user_type not in USER_TYPES:
            raise MatrixError(400, "Invalid user type", Codes.INVALID_PARAM)
        displayname = body.get("displayname")
        if displayname is not None and not isinstance(displayname, str):
            raise MatrixError(400, "displayname must be a string", Codes.BAD_JSON)
        got_mac = body.get("mac")
        if not isinstance(got_mac, str):
            raise MatrixError(400, "mac must be specified", Codes.MISSING_PARAM)

        want_mac = compute_mac(secret, nonce, username, password, admin, user_type)
        if not hmac.compare_digest(want_mac.encode("ascii"), got_mac.encode("utf-8", "replace")):
            raise MatrixError(403, "HMAC incorrect", Codes.FORBIDDEN)

        localpart = await self._registration.check_username_available(username)
        password_hash = await self._hasher.hash(self._hasher.validate_new_password(password))
        user_id = await self._registration.create_account(
            localpart, password_hash, admin=admin, user_type=user_type, displayname=displayname or None,
        )
        session = await self._sessions.issue(user_id, None, None)
        return session.to_json()
