"""Other servers' space hierarchies, fetched over federation.

``FederationHierarchyClient`` implements ``matrixd.handlers.rooms.hierarchy.RemoteSpaceHierarchy``:
``GET /_matrix/federation/v1/hierarchy/{roomId}`` on one of a child's ``via`` servers. (Answering
other servers is ``matrixd.federation.inbound_queries.SpaceHierarchy``.)
"""

from __future__ import annotations

from urllib.parse import quote

from matrixd.federation.transport.client import MatrixFederationClient
from matrixd.types import JsonDict


class FederationHierarchyClient:
    def __init__(self, client: MatrixFederationClient) -> None:
        self._client = client

    async def get_hierarchy(self, destination: str, room_id: str, suggested_only: bool) -> JsonDict:
        """The remote's answer; raises ``HttpResponseException`` / ``RequestSendFailed`` on failure."""
        path = f"/_matrix/federation/v1/hierarchy/{quote(room_id, safe='')}"
        return await self._client.get_json(destination, path, {"suggested_only": "true" if suggested_only else "false"})
