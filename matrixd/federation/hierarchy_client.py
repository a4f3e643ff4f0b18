"""Other servers' space hierarchies, fetched over federation.

``FederationHierarchyClient`` implements ``matrixd.handlers.rooms.hierarchy.RemoteSpaceHierarchy``:
``GET /_matrix/federation/v1/hierarchy/{roomId}`` on one of a child's ``via`` servers. (Answering
other servers is ``matrixd.federation.inbound_queries.SpaceHierarchy``.)
"""

from __future__ import annotations

import logging
from typing import Optional
from urllib.parse import quote

from matrixd.federation.transport.client import HttpResponseException, MatrixFederationClient, RequestSendFailed
from matrixd.types import JsonDict

logger = logging.getLogger(__name__)


class FederationHierarchyClient:
    def __init__(self, client: MatrixFederationClient) -> None:
        self._client = client

    async def get_hierarchy(self, destination: str, room_id: str, suggested_only: bool) -> Optional[JsonDict]:
        """The remote's answer, or None if it refused or could not be reached (logged)."""
        path = f"/_matrix/federation/v1/hierarchy/{quote(room_id, safe='')}"
        try:
            return await self._client.get_json(destination, path,
                                               {"suggested_only": "true" if suggested_only else "false"})
        except (HttpResponseException, RequestSendFailed) as e:
            logger.info("hierarchy of %s from %s failed: %s", room_id, destination, e)
            return None
