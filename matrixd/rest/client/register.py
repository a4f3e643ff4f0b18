"""``POST /register``, ``GET /register/available`` and the registration token validity check."""

from __future__ import annotations

from matrixd.api.errors import AuthError
from matrixd.config.registration import RegistrationConfig
from matrixd.handlers.accounts.register import RegistrationHandler
from matrixd.handlers.ratelimit import Ratelimiter
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import (
    get_access_token_from_request,
    has_access_token,
    parse_json_object_from_request,
    parse_string,
)
from matrixd.storage.registration_tokens import RegistrationTokenStore
from matrixd.types import JsonDict


class RegisterServlet(RestServlet):
    """Full accounts through user-interactive auth; ``?kind=guest`` for guest accounts."""

    PATTERNS = client_patterns("/register")

    def __init__(self, handler: RegistrationHandler) -> None:
        self._handler = handler

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        kind = parse_string(request, "kind", "user", allowed_values=("user", "guest"))
        body = parse_json_object_from_request(request, allow_empty_body=True)
        if kind == "guest":
            return 200, await self._handler.register_guest(body, request.get_client_ip())
        # Application services register their users with their as_token (m.login.application_service).
        as_login = body.get("type") == "m.login.application_service" and has_access_token(request)
        token = get_access_token_from_request(request) if as_login else None
        return 200, await self._handler.register(body, request.get_client_ip(), access_token=token)


class RegisterAvailableServlet(RestServlet):
    PATTERNS = client_patterns("/register/available")

    def __init__(self, handler: RegistrationHandler) -> None:
        self._handler = handler

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        username = parse_string(request, "username", required=True)
        await self._handler.username_available(username, request.get_client_ip())
        return 200, {"available": True}


class RegistrationTokenValidityServlet(RestServlet):
    """Rate limited per client IP: it would otherwise let anyone guess tokens."""

    PATTERNS = client_patterns("/register/m\\.login\\.registration_token/validity", releases=(), v1=True)

    def __init__(self, config: RegistrationConfig, store: RegistrationTokenStore, ratelimiter: Ratelimiter) -> None:
        self._config = config
        self._store = store
        self._ratelimiter = ratelimiter

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        if not self._config.enable_registration:
            raise AuthError(403, "Registration is not enabled on this homeserver")
        self._ratelimiter.ratelimit(request.get_client_ip())
        token = parse_string(request, "token", required=True)
        return 200, {"valid": await self._store.is_valid(token)}
