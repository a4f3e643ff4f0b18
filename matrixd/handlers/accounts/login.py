"""``/login``: the offered flows, password and token logins, and issuing
``m.login.token`` tokens to already-logged-in clients (``POST /login/get_token``).

Rate limits (``rc_login``): ``address`` per client IP on every attempt,
``failed_attempts`` per account on wrong passwords (see ``credentials``),
``account`` per account on successful logins.
"""

from __future__ import annotations

import secrets
from typing import Callable, Optional

from matrixd.api.errors import Codes, InvalidClientTokenError, MatrixError, MissingClientTokenError
from matrixd.config.registration import LoginViaExistingSessionConfig
from matrixd.handlers.accounts.credentials import PasswordAuthenticator
from matrixd.handlers.accounts.passwords import PasswordHasher
from matrixd.handlers.accounts.sessions import IssuedSession, SessionHandler
from matrixd.handlers.accounts.uia import Reauthentication
from matrixd.handlers.ratelimit import Ratelimiter
from matrixd.storage.accounts import UserStore
from matrixd.storage.login_tokens import LoginTokenStore
from matrixd.types import JsonDict, Requester
from matrixd.util.clock import Clock

LOGIN_PASSWORD = "m.login.password"
LOGIN_TOKEN = "m.login.token"
LOGIN_APPLICATION_SERVICE = "m.login.application_service"
#: ``as_token`` -> (service id, rate limited?, may the service act as this user id?); None if not a service's.
AppServiceLookup = Callable[[str], Optional[tuple[str, bool, Callable[[str], bool]]]]


def new_login_token() -> str:
    return "mdl_" + secrets.token_urlsafe(32)


class LoginHandler:
    def __init__(
        self,
        *,
        clock: Clock,
        users: UserStore,
        hasher: PasswordHasher,
        authenticator: PasswordAuthenticator,
        sessions: SessionHandler,
        login_tokens: LoginTokenStore,
        reauth: Reauthentication,
        token_config: LoginViaExistingSessionConfig,
        address_limiter: Ratelimiter,
        account_limiter: Ratelimiter,
        get_token_limiter: Ratelimiter,
    ) -> None:
        self._clock = clock
        self._users = users
        self._hasher = hasher
        self._authenticator = authenticator
        self._sessions = sessions
        self._login_tokens = login_tokens
        self._reauth = reauth
        self._token_config = token_config
        self._address_limiter = address_limiter
        self._account_limiter = account_limiter
        self._get_token_limiter = get_token_limiter
        self._app_service_lookup: Optional[AppServiceLookup] = None
        self._server_name = ""

    def set_app_services(self, server_name: str, lookup: AppServiceLookup) -> None:
        """Wired by the application service area: enables ``m.login.application_service``."""
        self._server_name = server_name
        self._app_service_lookup = lookup

    def flows(self) -> list[JsonDict]:
        flows: list[JsonDict] = []
        if self._hasher.enabled:
            flows.append({"type": LOGIN_PASSWORD})
        token_flow: JsonDict = {"type": LOGIN_TOKEN}
        if self._token_config.enabled:
            token_flow["get_login_token"] = True
        flows.append(token_flow)
        if self._app_service_lookup is not None:
            flows.append({"type": LOGIN_APPLICATION_SERVICE})
        return flows

    async def login(self, body: JsonDict, client_ip: str, access_token: Optional[str] = None) -> IssuedSession:
        """``POST /login``; returns the new session.

        Raises:
            MatrixError: 400 for unknown types or malformed bodies, 403 for bad
                credentials or deactivated users, 429 when rate limited.
        """
        login_type = body.get("type")
        if login_type == LOGIN_APPLICATION_SERVICE:
            return await self._login_app_service_user(body, client_ip, access_token)
        self._address_limiter.ratelimit(client_ip)
        if not isinstance(login_type, str):
            raise MatrixError(400, "Missing or invalid 'type'", Codes.MISSING_PARAM
                              if login_type is None else Codes.BAD_JSON)
        for key, kind in (("device_id", str), ("initial_device_display_name", str), ("refresh_token", bool)):
            value = body.get(key)
            if value is not None and not isinstance(value, kind):
                raise MatrixError(400, f"'{key}' must be a {kind.__name__}", Codes.BAD_JSON)

        if login_type == LOGIN_PASSWORD and self._hasher.enabled:
            user_id = await self._authenticator.check(body)
        elif login_type == LOGIN_TOKEN:
            user_id = await self._check_login_token(body)
        else:
            raise MatrixError(400, f"Unknown login type {login_type!r}", Codes.UNKNOWN)

        self._account_limiter.ratelimit(user_id.lower())
        return await self._sessions.issue(
            user_id, body.get("device_id"), body.get("initial_device_display_name"),
            want_refresh=bool(body.get("refresh_token")),
        )

    async def _login_app_service_user(self, body: JsonDict, client_ip: str,
                                      access_token: Optional[str]) -> IssuedSession:
        """``m.login.application_service``: a service logs in as one of its (existing) users with its as_token."""
        if self._app_service_lookup is None:
            raise MatrixError(400, f"Unknown login type {LOGIN_APPLICATION_SERVICE!r}", Codes.UNKNOWN)
        if access_token is None:
            raise MissingClientTokenError()
        found = self._app_service_lookup(access_token)
        if found is None:
            raise InvalidClientTokenError()
        _service_id, rate_limited, may_act_as = found
        if rate_limited:
            self._address_limiter.ratelimit(client_ip)
        for key, kind in (("device_id", str), ("initial_device_display_name", str), ("refresh_token", bool)):
            value = body.get(key)
            if value is not None and not isinstance(value, kind):
                raise MatrixError(400, f"'{key}' must be a {kind.__name__}", Codes.BAD_JSON)
        identifier = body.get("identifier")
        user: object = None
        if isinstance(identifier, dict) and identifier.get("type") == "m.id.user":
            user = identifier.get("user")
        elif identifier is None:
            user = body.get("user")
        if not isinstance(user, str) or not user:
            raise MatrixError(400, "An m.id.user identifier is required", Codes.INVALID_PARAM)
        user_id = user if user.startswith("@") else f"@{user.lower()}:{self._server_name}"
        if not may_act_as(user_id):
            raise MatrixError(403, "This user ID is not in the application service's namespace", Codes.EXCLUSIVE)
        info = await self._users.get_user(user_id)
        if info is None:
            raise MatrixError(403, "Invalid username or password", Codes.FORBIDDEN)
        if info.deactivated:
            raise MatrixError(403, "This account has been deactivated", Codes.USER_DEACTIVATED)
        return await self._sessions.issue(
            user_id, body.get("device_id"), body.get("initial_device_display_name"),
            want_refresh=bool(body.get("refresh_token")),
        )

    async def _check_login_token(self, body: JsonDict) -> str:
        token = body.get("token")
        if not isinstance(token, str):
            raise MatrixError(400, "Missing 'token'", Codes.MISSING_PARAM)
        user_id = await self._login_tokens.consume_login_token(token)
        if user_id is None:
            raise MatrixError(403, "Invalid login token", Codes.FORBIDDEN)
        info = await self._users.get_user(user_id)
        if info is None or info.deactivated:
            raise MatrixError(403, "This account has been deactivated", Codes.USER_DEACTIVATED)
        return user_id

    async def create_login_token(self, requester: Requester, body: JsonDict) -> JsonDict:
        """``POST /login/get_token``: a single-use token for another client, after re-authentication."""
        if not self._token_config.enabled:
            raise MatrixError(404, "Login token generation is disabled on this server", Codes.UNRECOGNIZED)
        if self._token_config.require_ui_auth:
            await self._reauth.require(requester, body, method="POST", operation="/login/get_token")
        self._get_token_limiter.ratelimit(requester.user_id)
        await self._login_tokens.delete_expired()
        token = new_login_token()
        lifetime = self._token_config.token_timeout_ms
        await self._login_tokens.add_login_token(token, requester.user_id, self._clock.time_msec() + lifetime)
        return {"login_token": token, "expires_in_ms": lifetime}

    def get_token_enabled(self) -> bool:
        return self._token_config.enabled

