"""``GET /_matrix/federation/v1/openid/userinfo``: not signed; the OpenID token is the credential."""

from __future__ import annotations

from matrixd.federation.inbound_queries import OpenIdTokens
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, federation_patterns
from matrixd.http.servlet import parse_string
from matrixd.types import JsonDict


class OpenIdUserInfoServlet(RestServlet):
    PATTERNS = federation_patterns("/openid/userinfo")

    def __init__(self, tokens: OpenIdTokens) -> None:
        self._tokens = tokens

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        token = parse_string(request, "access_token", required=True)
        return 200, await self._tokens.get_userinfo(token)
