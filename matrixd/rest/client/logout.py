"""``POST /logout`` and ``POST /logout/all``; expired (soft-logged-out) tokens may still log out."""

from __future__ import annotations

from matrixd.handlers.accounts.sessions import SessionHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.types import JsonDict


class LogoutServlet(RestServlet):
    PATTERNS = client_patterns("/logout")

    def __init__(self, auth: Auth, sessions: SessionHandler) -> None:
        self._auth = auth
        self._sessions = sessions

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True, allow_expired=True)
        await self._sessions.logout(requester)
        return 200, {}


class LogoutAllServlet(RestServlet):
    PATTERNS = client_patterns("/logout/all")

    def __init__(self, auth: Auth, sessions: SessionHandler) -> None:
        self._auth = auth
        self._sessions = sessions

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True, allow_expired=True)
        await self._sessions.logout_all(requester.user_id)
        return 200, {}
