"""``POST /_matrix/federation/v1/user/keys/query`` and ``/user/keys/claim``."""

from __future__ import annotations

from matrixd.federation.inbound_queries import FederationKeyQueries
from matrixd.federation.transport.server import BaseFederationServlet, FederationAuthenticator
from matrixd.http.request import MatrixRequest
from matrixd.http.server import federation_patterns
from matrixd.types import JsonDict


class _KeysServlet(BaseFederationServlet):
    def __init__(self, authenticator: FederationAuthenticator, queries: FederationKeyQueries) -> None:
        super().__init__(authenticator)
        self._queries = queries


class UserKeysQueryServlet(_KeysServlet):
    PATTERNS = federation_patterns("/user/keys/query")

    async def on_POST(self, origin: str, content: JsonDict, request: MatrixRequest) -> tuple[int, JsonDict]:
        return 200, await self._queries.query_keys(content)


class UserKeysClaimServlet(_KeysServlet):
    PATTERNS = federation_patterns("/user/keys/claim")

    async def on_POST(self, origin: str, content: JsonDict, request: MatrixRequest) -> tuple[int, JsonDict]:
        return 200, await self._queries.claim_keys(content)
