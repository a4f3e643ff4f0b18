"""Account registration: ``POST /register`` (users through UIA, guests, guest
upgrades), username availability, and the account creation every path shares.

New localparts must follow the strict grammar (``a-z 0-9 . _ = - / +``); a
requested username is lowercased first.  Localparts starting with ``_`` are
reserved for application services and all-digit ones for generated ids
(guests, registrations without a username).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, Callable, Optional

from matrixd.api.errors import (
    AuthError,
    Codes,
    InvalidClientTokenError,
    LimitExceededError,
    MatrixError,
    MissingClientTokenError,
)
from matrixd.config.registration import RegistrationConfig
from matrixd.handlers.accounts.devices import check_device_id
from matrixd.handlers.accounts.passwords import PasswordHasher
from matrixd.handlers.accounts.sessions import IssuedSession, SessionHandler
from matrixd.handlers.accounts.uia import DUMMY, REGISTRATION_TOKEN, UiaResult, UserInteractiveAuth
from matrixd.handlers.ratelimit import Ratelimiter
from matrixd.storage.accounts import TokenStore, UserStore
from matrixd.storage.profiles import ProfileStore
from matrixd.storage.registration_tokens import RegistrationTokenStore
from matrixd.types import MAX_USER_ID_LENGTH, JsonDict, is_strict_localpart
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

#: ``user_type`` values an account may have besides a normal user (None).
USER_TYPES = frozenset({"bot", "support"})

#: Called with a full user id: True if an application service claims it exclusively.
ExclusiveCheck = Callable[[str], bool]
#: Called with an ``as_token``: the id of the application service it belongs to and a predicate
#: telling whether that service may register/act as a user id; None if it is no service's token.
AppServiceLookup = Callable[[str], Optional[tuple[str, bool, Callable[[str], bool]]]]
#: The registration/login type application services use (with their as_token).
LOGIN_APPLICATION_SERVICE = "m.login.application_service"
#: Called after a local account is created or its profile changes (user directory).
ProfileListener = Callable[[str, Optional[str], Optional[str]], Any]


def _opt(body: JsonDict, key: str, kind: type) -> Any:
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        raise MatrixError(400, f"'{key}' must be a {kind.__name__}", Codes.BAD_JSON)
    return value


class RegistrationHandler:
    def __init__(
        self,
        *,
        clock: Clock,
        server_name: str,
        config: RegistrationConfig,
        users: UserStore,
        tokens: TokenStore,
        profiles: ProfileStore,
        hasher: PasswordHasher,
        sessions: SessionHandler,
        uia: UserInteractiveAuth,
        registration_tokens: RegistrationTokenStore,
        ratelimiter: Ratelimiter,
        on_profile_changed: Callable[[str, Optional[str], Optional[str]], Any],
        exclusive_check: Optional[ExclusiveCheck] = None,
    ) -> None:
        self._clock = clock
        self._server_name = server_name
        self._config = config
        self._users = users
        self._tokens = tokens
        self._profiles = profiles
        self._hasher = hasher
        self._sessions = sessions
        self._uia = uia
        self._registration_tokens = registration_tokens
        self._ratelimiter = ratelimiter
        self._on_profile_changed = on_profile_changed
        self._exclusive_check = exclusive_check
        self._app_service_lookup: Optional[AppServiceLookup] = None

    def set_app_services(self, exclusive_check: ExclusiveCheck, lookup: AppServiceLookup) -> None:
        """Wired by the application service area: exclusive namespaces and ``m.login.application_service``."""
        self._exclusive_check = exclusive_check
        self._app_service_lookup = lookup

    # -- usernames ------------------------------------------------------------------

    def validate_username(self, username: object) -> str:
        """The localpart a requested username maps to; raises 400 ``M_INVALID_USERNAME`` otherwise."""
        if not isinstance(username, str) or not username:
            raise MatrixError(400, "username must be a non-empty string", Codes.INVALID_USERNAME)
        localpart = username.lower()
        if not is_strict_localpart(localpart):
            raise MatrixError(400, "User ID can only contain characters a-z, 0-9, or '=_-./+'",
                              Codes.INVALID_USERNAME)
        if localpart.startswith("_"):
            raise MatrixError(400, "User ID may not begin with _ (reserved for bridges)", Codes.INVALID_USERNAME)
        if localpart.isdigit():
            raise MatrixError(400, "Numeric user IDs are reserved for generated accounts", Codes.INVALID_USERNAME)
        if len(self._user_id(localpart)) > MAX_USER_ID_LENGTH:
            raise MatrixError(400, f"User ID may not be longer than {MAX_USER_ID_LENGTH} characters",
                              Codes.INVALID_USERNAME)
        return localpart

    async def check_username_available(self, username: object) -> str:
        """Validate ``username`` and check nobody has or claims it; returns the localpart."""
        localpart = self.validate_username(username)
        user_id = self._user_id(localpart)
        if self._exclusive_check is not None and self._exclusive_check(user_id):
            raise MatrixError(400, "This user ID is reserved by an application service", Codes.EXCLUSIVE)
        if await self._users.get_user_case_insensitive(user_id):
            raise MatrixError(400, "User ID already taken.", Codes.USER_IN_USE)
        return localpart

    async def username_available(self, username: object, client_ip: str) -> None:
        """``GET /register/available``: returns if free, raises the reason otherwise."""
        if not self._config.enable_registration:
            raise AuthError(403, "Registration has been disabled")
        self._ratelimiter.ratelimit(client_ip)
        await self.check_username_available(username)

    def _user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self._server_name}"

    # -- account creation -------------------------------------------------------------

    async def create_account(self, localpart: Optional[str], password_hash: Optional[str], *,
                             admin: bool = False, guest: bool = False, user_type: Optional[str] = None,
                             displayname: Optional[str] = None, appservice_id: Optional[str] = None) -> str:
        """Create a local account (a generated numeric localpart if None); returns the user id.

        The display name defaults to the localpart, except for guests.

        Raises:
            MatrixError: 400 ``M_USER_IN_USE`` if the id was taken meanwhile.
        """
        if localpart is None:
            for _ in range(10):
                candidate = str(secrets.randbelow(9 * 10**9) + 10**9)
                if await self._users.create_user(self._user_id(candidate), password_hash, admin=admin,
                                                 is_guest=guest, user_type=user_type):
                    localpart = candidate
                    break
            else:
                raise MatrixError(500, "Could not generate a free user ID", Codes.UNKNOWN)
        elif not await self._users.create_user(self._user_id(localpart), password_hash, admin=admin,
                                               is_guest=guest, user_type=user_type, appservice_id=appservice_id):
            raise MatrixError(400, "User ID already taken.", Codes.USER_IN_USE)
        user_id = self._user_id(localpart)
        if displayname is None and not guest:
            displayname = localpart
        await self._profiles.create_profile(user_id, displayname)
        try:
            await self._on_profile_changed(user_id, displayname, None)
        except Exception:
            logger.exception("profile listener failed for new user %s", user_id)
        logger.info("registered %s%s", user_id, " (guest)" if guest else "")
        return user_id

    # -- POST /register -------------------------------------------------------------

    def _flows(self) -> list[list[str]]:
        return [[REGISTRATION_TOKEN]] if self._config.registration_requires_token else [[DUMMY]]

    async def register(self, body: JsonDict, client_ip: str, access_token: Optional[str] = None) -> JsonDict:
        """``POST /register`` for a full account, through UIA (or by an application service, with its token)."""
        if body.get("type") == LOGIN_APPLICATION_SERVICE:
            return await self._register_app_service_user(body, client_ip, access_token)
        if not self._config.enable_registration:
            raise AuthError(403, "Registration has been disabled")
        allowed, wait = self._ratelimiter.can_do_action(client_ip, update=False)
        if not allowed:
            raise LimitExceededError(retry_after_ms=int(wait * 1000) + 1)
        await self._check_body(body)
        auth = body.get("auth")
        has_session = isinstance(auth, dict) and "session" in auth
        if body.get("password") is None and not has_session:
            raise MatrixError(400, "Missing 'password'", Codes.MISSING_PARAM)

        result = await self._uia.check_auth(body, method="POST", operation="/register", flows=self._flows(),
                                            requester=None, secret_params=("password",))
        try:
            return await self._register_authenticated(result, client_ip)
        except Exception:
            await self._uia.release_results(result.results)
            raise

    async def _check_body(self, body: JsonDict) -> Optional[str]:
        """Check the request's own parameters before authentication; returns an upgrading guest's id."""
        for key, kind in (("username", str), ("password", str), ("initial_device_display_name", str),
                          ("inhibit_login", bool), ("refresh_token", bool), ("guest_access_token", str)):
            _opt(body, key, kind)
        if body.get("device_id") is not None:
            check_device_id(body["device_id"])
        if body.get("password") is not None:
            self._check_password_allowed()
            self._hasher.validate_new_password(body["password"])
        guest_user = None
        if body.get("guest_access_token") is not None:
            guest_user = await self._guest_to_upgrade(body["guest_access_token"], body.get("username"))
        elif body.get("username") is not None:
            await self.check_username_available(body["username"])
        return guest_user

    def _check_password_allowed(self) -> None:
        if not self._hasher.enabled:
            raise MatrixError(403, "Password registration is disabled on this server", Codes.FORBIDDEN)

    async def _guest_to_upgrade(self, token: str, username: object) -> str:
        info = await self._tokens.get_token(token)
        user = await self._users.get_user(info.user_id) if info is not None else None
        if user is None or not user.is_guest or user.deactivated:
            raise AuthError(403, "guest_access_token is not the access token of a guest", Codes.FORBIDDEN)
        localpart = user.user_id[1:].split(":", 1)[0]
        if username != localpart:
            raise MatrixError(400, "username must be the guest's localpart when upgrading a guest",
                              Codes.INVALID_PARAM)
        return user.user_id

    async def _register_authenticated(self, result: UiaResult, client_ip: str) -> JsonDict:
        params = result.params
        guest_user = await self._check_body(params)
        password_hash = result.hashed.get("password")
        if password_hash is None:
            raise MatrixError(400, "Missing 'password'", Codes.MISSING_PARAM)
        self._ratelimiter.ratelimit(client_ip)
        if guest_user is not None:
            if not await self._users.upgrade_guest(guest_user, password_hash):
                raise AuthError(403, "This guest account has already been upgraded")
            user_id = guest_user
            guest_localpart = user_id[1:].split(":", 1)[0]
            profile = await self._profiles.get_profile(user_id)
            if profile is None or profile[0] is None:
                await self._profiles.set_displayname(user_id, guest_localpart)
                await self._on_profile_changed(user_id, guest_localpart, profile[1] if profile else None)
        else:
            username = params.get("username")
            localpart = self.validate_username(username) if username is not None else None
            user_id = await self.create_account(localpart, password_hash)
        token = result.results.get(REGISTRATION_TOKEN)
        if isinstance(token, str):
            await self._registration_tokens.complete_use(token)
        return await self._login_response(user_id, params)

    async def _login_response(self, user_id: str, params: JsonDict) -> JsonDict:
        if params.get("inhibit_login"):
            return {"user_id": user_id, "home_server": self._server_name}
        session: IssuedSession = await self._sessions.issue(
            user_id, params.get("device_id"), params.get("initial_device_display_name"),
            want_refresh=bool(params.get("refresh_token")),
        )
        return session.to_json()

    async def _register_app_service_user(self, body: JsonDict, client_ip: str,
                                         access_token: Optional[str]) -> JsonDict:
        """An application service registers a user in its namespace: no password, no UIA.

        Allowed even when registration is disabled (spec: application services
        register their users this way).
        """
        if access_token is None:
            raise MissingClientTokenError()
        found = self._app_service_lookup(access_token) if self._app_service_lookup is not None else None
        if found is None:
            raise InvalidClientTokenError()
        service_id, rate_limited, may_act_as = found
        for key, kind in (("username", str), ("initial_device_display_name", str), ("inhibit_login", bool),
                          ("refresh_token", bool)):
            _opt(body, key, kind)
        if body.get("device_id") is not None:
            check_device_id(body["device_id"])
        username = body.get("username")
        if not username:
            raise MatrixError(400, "Application services must give a username", Codes.MISSING_PARAM)
        localpart = username.lower()
        if not is_strict_localpart(localpart):
            raise MatrixError(400, "User ID can only contain characters a-z, 0-9, or '=_-./+'",
                              Codes.INVALID_USERNAME)
        user_id = self._user_id(localpart)
        if len(user_id) > MAX_USER_ID_LENGTH:
            raise MatrixError(400, f"User ID may not be longer than {MAX_USER_ID_LENGTH} characters",
                              Codes.INVALID_USERNAME)
        if not may_act_as(user_id):
            raise MatrixError(400, "This user ID is not in the application service's namespace", Codes.EXCLUSIVE)
        if rate_limited:
            self._ratelimiter.ratelimit(client_ip)
        if await self._users.get_user_case_insensitive(user_id):
            raise MatrixError(400, "User ID already taken.", Codes.USER_IN_USE)
        await self.create_account(localpart, None, appservice_id=service_id)
        return await self._login_response(user_id, body)

    async def register_guest(self, body: JsonDict, client_ip: str) -> JsonDict:
        """``POST /register?kind=guest``: no authentication; only the device display name is honoured."""
        if not self._config.allow_guest_access:
            raise AuthError(403, "Guest access is disabled", Codes.GUEST_ACCESS_FORBIDDEN)
        display_name = _opt(body, "initial_device_display_name", str)
        self._ratelimiter.ratelimit(client_ip)
        user_id = await self.create_account(None, None, guest=True)
        session = await self._sessions.issue(user_id, None, display_name)
        return session.to_json()
