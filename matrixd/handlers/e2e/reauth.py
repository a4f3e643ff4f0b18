"""Re-authentication for replacing cross-signing keys (``/keys/device_signing/upload``).

The endpoint needs User-Interactive Authentication when it would replace
existing keys.  The server's full UIA (sessions, several stages) lives with the
account code; until it is wired in here, :class:`PasswordReauth` implements the
one flow this endpoint offers, ``m.login.password``, statelessly: the 401
challenge hands out a session id, and any request whose ``auth`` carries the
requester's correct password passes.  A full UIA implementation plugs in through
the :class:`Reauthenticator` protocol.
"""

from __future__ import annotations

import secrets
from typing import Any, Optional, Protocol

import bcrypt
from twisted.internet.threads import deferToThreadPool

from matrixd.api.errors import Codes, MatrixError
from matrixd.storage.accounts import UserStore
from matrixd.types import JsonDict, Requester
from matrixd.util.clock import Clock

PASSWORD = "m.login.password"


class Reauthenticator(Protocol):
    async def require_auth(self, requester: Requester, body: JsonDict, operation: str) -> None:
        """Return if ``body["auth"]`` authenticates the requester again; raise the UIA 401 otherwise."""
        ...


class AuthRequiredError(MatrixError):
    """The UIA 401: the flows on offer, a session, and (after a failed attempt) why it failed."""

    def __init__(self, session: str, error: Optional[MatrixError] = None) -> None:
        super().__init__(401, error.msg if error else "Additional authentication required",
                         error.errcode if error else Codes.UNAUTHORIZED)
        self.body: JsonDict = {"flows": [{"stages": [PASSWORD]}], "params": {}, "session": session}
        if error is not None:
            self.body["errcode"] = error.errcode
            self.body["error"] = error.msg

    def to_json(self) -> dict[str, Any]:
        return dict(self.body)


def _claimed_user(auth: JsonDict, server_name: str) -> Optional[str]:
    identifier = auth.get("identifier")
    user: object = None
    if isinstance(identifier, dict):
        if identifier.get("type") != "m.id.user":
            return None
        user = identifier.get("user")
    else:
        user = auth.get("user")  # the deprecated top-level form
    if not isinstance(user, str) or not user:
        return None
    return user if user.startswith("@") else f"@{user}:{server_name}"


class PasswordReauth:
    def __init__(self, clock: Clock, users: UserStore, server_name: str) -> None:
        self._reactor: Any = clock.reactor
        self._users = users
        self._server_name = server_name

    async def require_auth(self, requester: Requester, body: JsonDict, operation: str) -> None:
        auth = body.get("auth")
        if auth is None:
            raise AuthRequiredError(secrets.token_urlsafe(16))
        if not isinstance(auth, dict):
            raise MatrixError(400, "'auth' must be an object", Codes.BAD_JSON)
        session = auth.get("session")
        session_id = session if isinstance(session, str) and session else secrets.token_urlsafe(16)
        if auth.get("type") != PASSWORD:
            raise AuthRequiredError(session_id, MatrixError(401, "Unsupported auth type", Codes.UNRECOGNIZED))
        if _claimed_user(auth, self._server_name) != requester.user_id:
            raise MatrixError(403, "The identifier does not match the authenticated user", Codes.FORBIDDEN)
        password = auth.get("password")
        user = await self._users.get_user(requester.user_id)
        ok = False
        if isinstance(password, str) and user is not None and user.password_hash:
            pw_hash = user.password_hash
            # bcrypt is deliberately slow: run it on the reactor's thread pool.
            ok = await deferToThreadPool(self._reactor, self._reactor.getThreadPool(), _check_password,
                                         password, pw_hash)
        if not ok:
            raise AuthRequiredError(session_id, MatrixError(401, "Invalid password", Codes.FORBIDDEN))


def _check_password(password: str, pw_hash: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode("utf-8"), pw_hash.encode("ascii"))
    except ValueError:
        return False
