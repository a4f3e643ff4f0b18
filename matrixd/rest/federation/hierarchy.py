"""``GET /_matrix/federation/v1/hierarchy/{roomId}``."""

from __future__ import annotations

from matrixd.federation.inbound_queries import SpaceHierarchy
from matrixd.federation.acl import ServerAclChecker
from matrixd.federation.transport.server import BaseFederationServlet, FederationAuthenticator
from matrixd.http.request import MatrixRequest
from matrixd.http.server import federation_patterns
from matrixd.http.servlet import parse_boolean
from matrixd.types import JsonDict


class HierarchyServlet(BaseFederationServlet):
    PATTERNS = federation_patterns("/hierarchy/(?P<room_id>[^/]*)")
    ROOM_ID_ARG = "room_id"

    def __init__(self, authenticator: FederationAuthenticator, acl: ServerAclChecker,
                 hierarchy: SpaceHierarchy) -> None:
        super().__init__(authenticator, acl)
        self._hierarchy = hierarchy

    async def on_GET(self, origin: str, content: None, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        suggested_only = parse_boolean(request, "suggested_only", default=False)
        return 200, await self._hierarchy.get_hierarchy(origin, room_id, suggested_only)
