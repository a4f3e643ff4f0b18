"""User-interactive authentication (UIA): flows of stages, sessions, the 401 dance.

An endpoint calls :meth:`UserInteractiveAuth.check_auth` with the request body
and the flows it offers.  The first request (no ``auth``) opens a session bound
to the operation (method + a canonical path) and to that request's parameters,
and gets the 401 with ``flows``/``params``/``session``.  Later requests name
the session in ``auth`` and complete one stage each; they may repeat the
original parameters or omit them, but never change them (403), so a session
authenticated for one operation cannot be spent on another.  When every stage
of some flow is complete the session is consumed (deleted) and the operation
runs with the original parameters.

Secret parameters (the password of ``/register``, the new password of
``/account/password``) are never stored: the session keeps their bcrypt hash,
a later request repeating one is compared against it, and the operation gets
the hash (:attr:`UiaResult.hashed`).

Stages must be completed in the order of some offered flow; a failed attempt
is a 401 with the usual body plus ``errcode``/``error``; a stage that is
already complete is not re-run.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, Collection, Mapping, Optional, Protocol, Sequence

import attrs

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.accounts.credentials import PasswordAuthenticator, identifier_from_body
from matrixd.handlers.accounts.passwords import PasswordHasher
from matrixd.storage.accounts import UserStore
from matrixd.storage.registration_tokens import RegistrationTokenStore
from matrixd.storage.uia import CompletedStage, UiaSession, UiaSessionStore
from matrixd.types import JsonDict, Requester
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"
REGISTRATION_TOKEN = "m.login.registration_token"

#: How long a session may take from its first request to its completion.
SESSION_LIFETIME_MS = 24 * 3600 * 1000
#: Expired sessions are swept at most this often (when a new session opens).
_PURGE_INTERVAL_MS = 60_000

Flows = Sequence[Sequence[str]]


class InteractiveAuthIncompleteError(MatrixError):
    """The 401 of UIA: what flows exist, which stages are done, and (after a failed attempt) why."""

    def __init__(self, session_id: str, flows: Flows, params: JsonDict, completed: Sequence[str],
                 error: Optional[MatrixError] = None) -> None:
        super().__init__(401, error.msg if error else "Additional authentication required",
                         error.errcode if error else Codes.UNAUTHORIZED)
        self.session_id = session_id
        self.body: JsonDict = {
            "flows": [{"stages": list(f)} for f in flows],
            "params": params,
            "session": session_id,
        }
        if completed:
            self.body["completed"] = list(completed)
        if error is not None:
            self.body["errcode"] = error.errcode
            self.body["error"] = error.msg

    def to_json(self) -> JsonDict:
        return dict(self.body)


class UiaStage(Protocol):
    """One auth type: checks the client's ``auth`` dict and says what it established."""

    async def check(self, auth: JsonDict, session: UiaSession, requester: Optional[Requester]) -> Any:
        """The stage's JSON-able result; raise a 401/403 ``MatrixError`` for a failed attempt
        (the client may retry) or another ``MatrixError`` to fail the request."""
        ...

    async def release(self, result: Any) -> None:
        """Give back what a completed stage reserved, for a session that will never complete."""
        ...


class DummyStage:
    async def check(self, auth: JsonDict, session: UiaSession, requester: Optional[Requester]) -> Any:
        return True

    async def release(self, result: Any) -> None:
        return None


class PasswordStage:
    """``m.login.password``: must authenticate the requester themselves when there is one."""

    def __init__(self, authenticator: PasswordAuthenticator) -> None:
        self._authenticator = authenticator

    async def check(self, auth: JsonDict, session: UiaSession, requester: Optional[Requester]) -> Any:
        if requester is not None:
            # Compare before checking the password: never test passwords of other accounts here.
            claimed = self._authenticator.qualify(identifier_from_body(auth))
            if await self._authenticator.resolve_user(claimed) != requester.user_id:
                raise MatrixError(403, "The identifier does not match the authenticated user", Codes.FORBIDDEN)
        return await self._authenticator.check(auth)

    async def release(self, result: Any) -> None:
        return None


class RegistrationTokenStage:
    """``m.login.registration_token``: reserves one use of a valid token for this session."""

    def __init__(self, store: RegistrationTokenStore) -> None:
        self._store = store

    async def check(self, auth: JsonDict, session: UiaSession, requester: Optional[Requester]) -> Any:
        token = auth.get("token")
        if not isinstance(token, str) or not token:
            raise MatrixError(400, "auth.token must be a non-empty string", Codes.MISSING_PARAM)
        if not await self._store.reserve_use(token):
            raise MatrixError(401, "Invalid registration token", Codes.FORBIDDEN)
        return token

    async def release(self, result: Any) -> None:
        if isinstance(result, str):
            await self._store.release_use(result)


@attrs.frozen(slots=True)
class UiaResult:
    """A completed authentication: the session's original parameters and each stage's result.

    ``params`` lacks the secret parameters; ``hashed`` maps each to its bcrypt hash.
    """

    params: JsonDict
    results: Mapping[str, Any]
    hashed: Mapping[str, str] = attrs.field(factory=dict)


class UserInteractiveAuth:
    def __init__(self, clock: Clock, store: UiaSessionStore, stages: Mapping[str, UiaStage],
                 hasher: PasswordHasher, session_lifetime_ms: int = SESSION_LIFETIME_MS) -> None:
        self._clock = clock
        self._store = store
        self._hasher = hasher
        self._stages = dict(stages)
        self._lifetime_ms = session_lifetime_ms
        self._last_purge = 0

    async def check_auth(self, body: JsonDict, *, method: str, operation: str, flows: Flows,
                         requester: Optional[Requester], secret_params: Collection[str] = ()) -> UiaResult:
        """Run one step of UIA for ``body``; returns once a flow is complete.

        Args:
            operation: the endpoint's canonical path with its path parameters
                (``/devices/ABC``), which the session is bound to.
            requester: the authenticated user, if the endpoint has one; the
                session is bound to them.
            secret_params: string parameters to keep only as bcrypt hashes
                (the caller has validated their type and policy).

        Raises:
            InteractiveAuthIncompleteError: 401, authentication is not complete.
            MatrixError: 400 for a malformed ``auth`` or unknown session; 403 if the
                session belongs to another operation, parameters or user.
        """
        for flow in flows:
            for stage in flow:
                if stage not in self._stages:
                    raise RuntimeError(f"UIA stage {stage!r} offered but not configured")
        auth = body.get("auth")
        if auth is not None and not isinstance(auth, dict):
            raise MatrixError(400, "'auth' must be an object", Codes.BAD_JSON)
        params = {k: v for k, v in body.items() if k != "auth" and k not in secret_params}
        secrets_given = {k: body[k] for k in secret_params if body.get(k) is not None}
        user_id = requester.user_id if requester is not None else None

        session: Optional[UiaSession] = None
        if auth is not None and "session" in auth:
            session = await self._existing_session(auth["session"], method, operation, user_id, params)
            for key, value in secrets_given.items():
                stored = session.hashed_params.get(key)
                if not isinstance(value, str) or not await self._hasher.check(value, stored):
                    raise _changed()
        if session is None:
            await self._maybe_purge()
            hashed = {k: await self._hasher.hash(v) for k, v in secrets_given.items() if isinstance(v, str)}
            session = await self._store.create_session(
                secrets.token_urlsafe(24), method, operation, user_id, params, hashed
            )
        completed = await self._store.get_completed_stages(session.session_id)
        if auth is None:
            raise self._incomplete(session, flows, completed)

        error: Optional[MatrixError] = None
        stage_type = auth.get("type")
        done = [c.stage_type for c in completed]
        if stage_type is not None and stage_type not in done:
            if not isinstance(stage_type, str):
                raise MatrixError(400, "auth.type must be a string", Codes.BAD_JSON)
            if not _is_next_stage(flows, done, stage_type):
                error = MatrixError(401, f"{stage_type} is not the next stage of any offered flow",
                                    Codes.FORBIDDEN)
            else:
                try:
                    result = await self._stages[stage_type].check(auth, session, requester)
                except MatrixError as e:
                    if e.code not in (401, 403):
                        raise
                    error = e
                else:
                    if await self._store.add_completed_stage(session.session_id, stage_type, result):
                        completed.append(CompletedStage(stage_type, result))
                    else:
                        await self._stages[stage_type].release(result)
                        completed = await self._store.get_completed_stages(session.session_id)

        done = [c.stage_type for c in completed]
        if any(all(s in done for s in flow) for flow in flows):
            if not await self._store.delete_session(session.session_id):
                raise MatrixError(400, "This authentication session has already been used", Codes.UNKNOWN)
            return UiaResult(session.params, {c.stage_type: c.result for c in completed}, session.hashed_params)
        raise self._incomplete(session, flows, completed, error)

    async def _existing_session(self, session_id: Any, method: str, operation: str, user_id: Optional[str],
                                params: JsonDict) -> UiaSession:
        if not isinstance(session_id, str):
            raise MatrixError(400, "auth.session must be a string", Codes.BAD_JSON)
        session = await self._store.get_session(session_id)
        if session is None or session.creation_ts + self._lifetime_ms < self._clock.time_msec():
            raise MatrixError(400, "Unknown or expired authentication session", Codes.UNKNOWN)
        changed = (
            session.method != method
            or session.uri != operation
            or session.user_id != user_id
            or any(k not in session.params or session.params[k] != v for k, v in params.items())
        )
        if changed:
            raise _changed()
        return session

    def _incomplete(self, session: UiaSession, flows: Flows, completed: list[CompletedStage],
                    error: Optional[MatrixError] = None) -> InteractiveAuthIncompleteError:
        return InteractiveAuthIncompleteError(
            session.session_id, flows, {}, [c.stage_type for c in completed], error
        )

    async def release_results(self, results: Mapping[str, Any]) -> None:
        """Give back what a completed authentication reserved, when the operation then failed."""
        for stage_type, result in results.items():
            stage = self._stages.get(stage_type)
            if stage is not None:
                await stage.release(result)

    async def _maybe_purge(self) -> None:
        now = self._clock.time_msec()
        if now - self._last_purge < _PURGE_INTERVAL_MS:
            return
        self._last_purge = now
        try:
            expired = await self._store.delete_sessions_before(now - self._lifetime_ms)
            for stage in expired:
                impl = self._stages.get(stage.stage_type)
                if impl is not None:
                    await impl.release(stage.result)
        except Exception:
            logger.exception("failed to purge expired UIA sessions")


def _changed() -> MatrixError:
    return MatrixError(403, "Requested operation has changed during the UI authentication session.",
                       Codes.FORBIDDEN)


def _is_next_stage(flows: Flows, done: Sequence[str], stage_type: str) -> bool:
    """Whether some flow starts with the completed stages and continues with ``stage_type``."""
    k = len(done)
    return any(len(f) > k and list(f[:k]) == list(done) and f[k] == stage_type for f in flows)


class Reauthentication:
    """UIA for an existing user's sensitive operations (password change, device
    deletion, deactivation, login tokens): they prove it is them with their password."""

    def __init__(self, uia: UserInteractiveAuth, users: UserStore, passwords_enabled: bool) -> None:
        self._uia = uia
        self._users = users
        self._passwords_enabled = passwords_enabled

    async def require(self, requester: Requester, body: JsonDict, *, method: str, operation: str,
                      secret_params: Collection[str] = ()) -> UiaResult:
        """Complete UIA for ``requester`` or raise (401 to continue, 403 if they cannot authenticate)."""
        user = await self._users.get_user(requester.user_id)
        if user is None or not user.password_hash or not self._passwords_enabled:
            raise MatrixError(403, "This account has no way to re-authenticate on this server", Codes.FORBIDDEN)
        return await self._uia.check_auth(body, method=method, operation=operation, flows=[[PASSWORD]],
                                          requester=requester, secret_params=secret_params)
