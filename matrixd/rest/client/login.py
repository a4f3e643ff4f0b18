"""``/login`` (flows and logging in), ``/login/get_token`` and ``/refresh``."""

from __future__ import annotations

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.accounts.login import LoginHandler
from matrixd.handlers.accounts.sessions import SessionHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import get_access_token_from_request, has_access_token, parse_json_object_from_request
from matrixd.types import JsonDict


class LoginServlet(RestServlet):
    PATTERNS = client_patterns("/login")

    def __init__(self, handler: LoginHandler) -> None:
        self._handler = handler

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        return 200, {"flows": self._handler.flows()}

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        body = parse_json_object_from_request(request)
        # m.login.application_service authenticates with the service's as_token.
        as_login = body.get("type") == "m.login.application_service" and has_access_token(request)
        token = get_access_token_from_request(request) if as_login else None
        session = await self._handler.login(body, request.get_client_ip(), access_token=token)
        return 200, session.to_json()


class LoginTokenServlet(RestServlet):
    """``POST /login/get_token`` (spec v1.7): a single-use token for signing in another client."""

    PATTERNS = client_patterns("/login/get_token", releases=(), v1=True)

    def __init__(self, auth: Auth, handler: LoginHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        return 200, await self._handler.create_login_token(requester, body)


class RefreshServlet(RestServlet):
    """``POST /refresh``: authenticated by the refresh token in the body, not an access token."""

    PATTERNS = client_patterns("/refresh", releases=("v3",), v1=True)

    def __init__(self, sessions: SessionHandler) -> None:
        self._sessions = sessions

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        body = parse_json_object_from_request(request)
        token = body.get("refresh_token")
        if not isinstance(token, str):
            raise MatrixError(400, "Missing 'refresh_token'",
                              Codes.MISSING_PARAM if token is None else Codes.BAD_JSON)
        session = await self._sessions.refresh(token)
        out: JsonDict = {"access_token": session.access_token, "refresh_token": session.refresh_token}
        if session.expires_in_ms is not None:
            out["expires_in_ms"] = session.expires_in_ms
        return 200, out
