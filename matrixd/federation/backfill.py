"""Backfill: fetching a room's older history from other servers when ``/messages`` runs out of it.

``FederationBackfiller.backfill(room_id, limit)`` asks the servers in the room
(``/backfill`` with our backward extremities) for up to ``limit`` earlier
events and persists them, oldest first, as backfilled timeline events: each
passes the receipt checks and the auth rules against the state before it
(from its prev events, or ``/state_ids`` where those are missing), and none
changes forward extremities or current state.
"""

from __future__ import annotations

import logging
import urllib.parse

from matrixd.federation.inbound.events import FederationEventHandler
from matrixd.federation.missing_events import RemoteEventFetcher, RemoteFetchError
from matrixd.federation.transport.client import HttpResponseException, MatrixFederationClient, RequestSendFailed
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.rooms import RoomStore
from matrixd.types import IdentifierError, get_domain_from_id

logger = logging.getLogger(__name__)

MAX_BACKFILL = 100


class FederationBackfiller:
    def __init__(
        self,
        *,
        server_name: str,
        client: MatrixFederationClient,
        fetcher: RemoteEventFetcher,
        rooms: RoomStore,
        events: EventStore,
        current_state: CurrentStateStore,
        event_handler: FederationEventHandler,
    ) -> None:
        self._server_name = server_name
        self._client = client
        self._fetcher = fetcher
        self._rooms = rooms
        self._events = events
        self._current = current_state
        self._event_handler = event_handler

    async def backfill(self, room_id: str, limit: int) -> bool:
        """Fetch up to ``limit`` events before our backward extremities; whether any were added."""
        extremities = await self._events.get_backward_extremities(room_id)
        if not extremities:
            return False
        rv = await self._rooms.get_room_version(room_id)
        limit = max(1, min(limit, MAX_BACKFILL))
        for server in await self._servers(room_id):
            try:
                body = await self._client.get_json(
                    server, f"/_matrix/federation/v1/backfill/{urllib.parse.quote(room_id, safe='')}",
                    {"v": sorted(extremities)[:20], "limit": limit},
                )
            except (HttpResponseException, RequestSendFailed) as e:
                logger.info("backfill of %s from %s failed: %s", room_id, server, e)
                continue
            pdus = body.get("pdus")
            events = await self._fetcher.check_all(rv, pdus if isinstance(pdus, list) else [])
            events = sorted((e for e in events if e.room_id == room_id), key=lambda e: (e.depth, e.event_id))
            added = False
            async with self._event_handler.room_lock.queue(room_id):
                for event in events:
                    try:
                        persisted = await self._event_handler.process_locked(
                            server, event, fetch_missing=False, backfilled=True
                        )
                    except RemoteFetchError as e:
                        logger.info("cannot backfill %s: %s", event.event_id, e)
                        continue
                    added = added or persisted is not None
            if added:
                return True
        return False

    async def _servers(self, room_id: str) -> list[str]:
        """Other servers with joined members, those with the most members first."""
        counts: dict[str, int] = {}
        for user_id in await self._current.get_users_in_room(room_id):
            try:
                domain = get_domain_from_id(user_id)
            except IdentifierError:
                continue
            if domain != self._server_name:
                counts[domain] = counts.get(domain, 0) + 1
        return sorted(counts, key=lambda d: (-counts[d], d))
