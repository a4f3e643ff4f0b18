"""``GET /_matrix/federation/v1/query/profile`` and ``/query/directory``."""

from __future__ import annotations

from matrixd.federation.read_handler import FederationReadHandler, PROFILE_FIELDS
from matrixd.federation.transport.server import BaseFederationServlet, FederationAuthenticator, JsonDict
from matrixd.http.request import MatrixRequest
from matrixd.http.server import federation_patterns
from matrixd.http.servlet import parse_string

__all__ = ["PROFILE_FIELDS", "QueryDirectoryServlet", "QueryProfileServlet"]


class _QueryServlet(BaseFederationServlet):
    def __init__(self, authenticator: FederationAuthenticator, handler: FederationReadHandler) -> None:
        super().__init__(authenticator)
        self._handler = handler


class QueryProfileServlet(_QueryServlet):
    PATTERNS = federation_patterns("/query/profile")

    async def on_GET(self, origin: str, content: None, request: MatrixRequest) -> tuple[int, JsonDict]:
        user_id = parse_string(request, "user_id", required=True)
        field = parse_string(request, "field")
        return 200, await self._handler.query_profile(user_id, field)


class QueryDirectoryServlet(_QueryServlet):
    PATTERNS = federation_patterns("/query/directory")

    async def on_GET(self, origin: str, content: None, request: MatrixRequest) -> tuple[int, JsonDict]:
        room_alias = parse_string(request, "room_alias", required=True)
        return 200, await self._handler.query_directory(room_alias)
