"""Authenticating client requests by access token."""

from __future__ import annotations

from typing import Optional, Protocol

from twisted.web.server import Request

from matrixd.api.errors import AuthError, Codes, InvalidClientTokenError, MatrixError
from matrixd.http.request import MatrixRequest
from matrixd.http.servlet import get_access_token_from_request
from matrixd.storage.accounts import TokenStore, UserStore
from matrixd.types import Requester
from matrixd.util.clock import Clock


class ActivityRecorder(Protocol):
    """Told about every authenticated request of a device (last-seen tracking; must not block)."""

    def record(self, user_id: str, device_id: str, ip: Optional[str], user_agent: Optional[str]) -> None: ...


class AppServiceAuth(Protocol):
    """Recognises application service ``as_token``s (``matrixd.appservice.auth.AppServiceTokenAuth``)."""

    async def authenticate(self, token: str, request: Request) -> Optional[Requester]: ...


class AccessTokenAuth:
    """The ``matrixd.http.auth.Auth`` of the client API: tokens issued by this server's login/register.

    The first request made with a refreshed access token revokes the refresh
    token it replaced (see ``matrixd.storage.accounts``).  Application service
    ``as_token``s are recognised first, through the hook set by
    :meth:`set_app_service_auth` (identity assertion with ``user_id``/``device_id``).
    """

    def __init__(self, clock: Clock, users: UserStore, tokens: TokenStore,
                 activity: Optional[ActivityRecorder] = None) -> None:
        self._clock = clock
        self._users = users
        self._tokens = tokens
        self._activity = activity
        self._app_services: Optional[AppServiceAuth] = None

    def set_app_service_auth(self, app_services: AppServiceAuth) -> None:
        """Wired once by the application service area when services are configured."""
        self._app_services = app_services

    async def get_user_by_req(
        self, request: Request, allow_guest: bool = False, allow_expired: bool = False
    ) -> Requester:
        token = get_access_token_from_request(request)
        if self._app_services is not None:
            as_requester = await self._app_services.authenticate(token, request)
            if as_requester is not None:
                if isinstance(request, MatrixRequest):
                    request.requester = as_requester
                return as_requester
        requester = await self.get_user_by_access_token(token, allow_expired=allow_expired)
        if requester.is_guest and not allow_guest:
            raise AuthError(403, "Guest access not allowed", Codes.GUEST_ACCESS_FORBIDDEN)
        if isinstance(request, MatrixRequest):
            request.requester = requester
            if self._activity is not None and requester.device_id is not None:
                self._activity.record(requester.user_id, requester.device_id, request.get_client_ip(),
                                      request.get_user_agent() or None)
        return requester

    async def get_user_by_access_token(self, token: str, allow_expired: bool = False) -> Requester:
        info = await self._tokens.get_token(token)
        if info is None:
            raise InvalidClientTokenError()
        if info.valid_until_ms is not None and info.valid_until_ms < self._clock.time_msec() and not allow_expired:
            raise InvalidClientTokenError("Access token has expired", soft_logout=True)
        user_id = info.puppets_user_id or info.user_id
        user = await self._users.get_user(user_id)
        if user is None or user.deactivated:
            raise InvalidClientTokenError()
        if user.locked:
            raise MatrixError(401, "User account has been locked", Codes.USER_LOCKED, {"soft_logout": True})
        if info.refresh_token_id is not None and not info.used:
            await self._tokens.mark_token_used(token, info)
        return Requester(
            user_id=user_id,
            device_id=info.device_id,
            access_token_id=info.token_id,
            is_guest=user.is_guest,
            app_service_id=user.appservice_id,
            shadow_banned=user.shadow_banned,
        )
