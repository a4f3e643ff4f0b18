"""Other servers' space hierarchies, fetched over federation.

``FederationHierarchyClient`` implements ``matrixd.handlers.rooms.hierarchy.RemoteSpaceHierarchy``:
``GET /_matrix/federation/v1/hierarchy/{roomId}`` on one of a child's ``via`` servers. (Answering
other servers is ``matrixd.federation.inbound_queries.SpaceHierarchy``.)

Answers are cached for ``CACHE_LIFETIME_MS`` per room and ``suggested_only`` (whichever server gave
them), as the spec recommends; failures are not cached.
"""

from __future__ import annotations

import logging
from typing import Optional
from urllib.parse import quote

from matrixd.federation.transport.client import HttpResponseException, MatrixFederationClient, RequestSendFailed
from matrixd.storage.cache import LruCache
from matrixd.types import JsonDict
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

CACHE_LIFETIME_MS = 5 * 60 * 1000


class FederationHierarchyClient:
    def __init__(self, client: MatrixFederationClient, clock: Clock) -> None:
        self._client = client
        self._clock = clock
        # (room id, suggested_only) -> (expiry in ms, answer)
        self._cache: LruCache[tuple[str, bool], tuple[int, JsonDict]] = LruCache("remote_space_hierarchy", 1000)

    async def get_hierarchy(self, destination: str, room_id: str, suggested_only: bool) -> Optional[JsonDict]:
        """The remote's answer, or None if it refused or could not be reached (logged)."""
        now = self._clock.time_msec()
        cached = self._cache.get((room_id, suggested_only))
        if cached is not None and cached[0] > now:
            return cached[1]
        path = f"/_matrix/federation/v1/hierarchy/{quote(room_id, safe='')}"
        try:
            answer = await self._client.get_json(destination, path,
                                                 {"suggested_only": "true" if suggested_only else "false"})
        except (HttpResponseException, RequestSendFailed) as e:
            logger.info("hierarchy of %s from %s failed: %s", room_id, destination, e)
            return None
        self._cache.set((room_id, suggested_only), (now + CACHE_LIFETIME_MS, answer))
        return answer
