"""``POST /user/{userId}/openid/request_token``: a token third parties verify through our federation API."""

from __future__ import annotations

from matrixd.federation.inbound_queries import OpenIdTokens
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import JsonDict


class OpenIdRequestTokenServlet(RestServlet):
    PATTERNS = client_patterns("/user/(?P<user_id>[^/]*)/openid/request_token")

    def __init__(self, auth: Auth, tokens: OpenIdTokens) -> None:
        self._auth = auth
        self._tokens = tokens

    async def on_POST(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        parse_json_object_from_request(request, allow_empty_body=True)
        return 200, await self._tokens.issue(requester, user_id)
