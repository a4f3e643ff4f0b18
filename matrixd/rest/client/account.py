"""``/account/*``: whoami, password, deactivation, and the third-party identifier
endpoints, which this server does not support (no identity-server integration
yet): they answer with an explicit refusal instead of pretending to succeed.
"""

from __future__ import annotations

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.accounts.account import AccountHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import JsonDict

THREEPID_UNSUPPORTED = "Third-party identifiers are not supported by this server"


class WhoamiServlet(RestServlet):
    PATTERNS = client_patterns("/account/whoami")

    def __init__(self, auth: Auth) -> None:
        self._auth = auth

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        out: JsonDict = {"user_id": requester.user_id, "is_guest": requester.is_guest}
        if requester.device_id is not None:
            out["device_id"] = requester.device_id
        return 200, out


class PasswordServlet(RestServlet):
    PATTERNS = client_patterns("/account/password")

    def __init__(self, auth: Auth, handler: AccountHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request)
        await self._handler.change_password(requester, body)
        return 200, {}


class DeactivateServlet(RestServlet):
    PATTERNS = client_patterns("/account/deactivate")

    def __init__(self, auth: Auth, handler: AccountHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        return 200, await self._handler.deactivate(requester, body)


class ThreepidServlet(RestServlet):
    """``GET /account/3pid`` lists none; the deprecated ``POST`` (add) is refused."""

    PATTERNS = client_patterns("/account/3pid")

    def __init__(self, auth: Auth) -> None:
        self._auth = auth

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.get_user_by_req(request)
        return 200, {"threepids": []}

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.get_user_by_req(request)
        raise MatrixError(403, THREEPID_UNSUPPORTED, Codes.THREEPID_DENIED)


class ThreepidAddServlet(RestServlet):
    """``/account/3pid/{add,bind}``: 403 ``M_THREEPID_DENIED``."""

    PATTERNS = client_patterns("/account/3pid/(?:add|bind)")

    def __init__(self, auth: Auth) -> None:
        self._auth = auth

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.get_user_by_req(request)
        parse_json_object_from_request(request)
        raise MatrixError(403, THREEPID_UNSUPPORTED, Codes.THREEPID_DENIED)


class ThreepidRemoveServlet(RestServlet):
    """``/account/3pid/{delete,unbind}``: 400 ``M_THREEPID_NOT_FOUND`` (none is ever bound here)."""

    PATTERNS = client_patterns("/account/3pid/(?:delete|unbind)")

    def __init__(self, auth: Auth) -> None:
        self._auth = auth

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.get_user_by_req(request)
        parse_json_object_from_request(request)
        raise MatrixError(400, "No such third-party identifier on this account", Codes.THREEPID_NOT_FOUND)


class ThreepidRequestTokenServlet(RestServlet):
    """Every ``.../{email,msisdn}/requestToken``: this server validates no third-party identifiers."""

    PATTERNS = [
        *client_patterns("/account/3pid/(?:email|msisdn)/requestToken"),
        *client_patterns("/account/password/(?:email|msisdn)/requestToken"),
        *client_patterns("/register/(?:email|msisdn)/requestToken"),
    ]

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        parse_json_object_from_request(request)
        raise MatrixError(403, THREEPID_UNSUPPORTED, Codes.THREEPID_DENIED)
