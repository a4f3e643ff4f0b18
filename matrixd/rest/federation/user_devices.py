"""``GET /_matrix/federation/v1/user/devices/{userId}``."""

from __future__ import annotations

from matrixd.federation.inbound_queries import FederationKeyQueries
from matrixd.federation.transport.server import BaseFederationServlet, FederationAuthenticator
from matrixd.http.request import MatrixRequest
from matrixd.http.server import federation_patterns
from matrixd.types import JsonDict


class UserDevicesServlet(BaseFederationServlet):
    PATTERNS = federation_patterns("/user/devices/(?P<user_id>[^/]*)")

    def __init__(self, authenticator: FederationAuthenticator, queries: FederationKeyQueries) -> None:
        super().__init__(authenticator)
        self._queries = queries

    async def on_GET(self, origin: str, content: None, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        return 200, await self._queries.get_user_devices(user_id)
