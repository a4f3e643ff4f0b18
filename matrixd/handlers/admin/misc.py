"""Small admin reads: event reports, server version, background updates and
federation destinations.

Federation destinations come through ``DestinationSource``; until the
federation sender's destinations table exists, ``NoDestinations`` answers with
an empty list (an honest "this server keeps no per-destination state yet").
"""

from __future__ import annotations

import platform
from typing import Any, Optional, Protocol, Sequence

from matrixd.api.errors import NotFoundError
from matrixd.federation.software import server_version
from matrixd.storage.admin import AdminStore
from matrixd.storage.events import EventStore
from matrixd.types import JsonDict


class DestinationSource(Protocol):
    async def list_destinations(self, start: int, limit: int) -> tuple[list[JsonDict], int]:
        """A page of destinations (Synapse's JSON shape) and how many there are."""

    async def get_destination(self, destination: str) -> Optional[JsonDict]:
        """One destination, or None if this server has no record of it."""

    async def reset_connection(self, destination: str) -> bool:
        """Clear the backoff of a destination; False if unknown."""


class NoDestinations:
    """The adapter used while no destinations table exists: nothing is known."""

    async def list_destinations(self, start: int, limit: int) -> tuple[list[JsonDict], int]:
        return [], 0

    async def get_destination(self, destination: str) -> Optional[JsonDict]:
        return None

    async def reset_connection(self, destination: str) -> bool:
        return False


def _report_json(row: Sequence[Any]) -> JsonDict:
    return {"id": int(row[0]), "received_ts": int(row[1]), "user_id": row[2], "room_id": row[3],
            "event_id": row[4], "reason": row[6], "score": row[7]}


class AdminMiscHandler:
    def __init__(self, *, store: AdminStore, events: EventStore, destinations: DestinationSource) -> None:
        self._store = store
        self._events = events
        self._destinations = destinations

    def server_version(self) -> JsonDict:
        return {"server_version": server_version(), "python_version": platform.python_version()}

    async def list_reports(self, *, start: int, limit: int, direction: str, user_id: Optional[str],
                           room_id: Optional[str]) -> JsonDict:
        rows, total = await self._store.list_reports(start=start, limit=limit, direction=direction,
                                                     user_id=user_id, room_id=room_id)
        out: JsonDict = {"event_reports": [_report_json(r) for r in rows], "total": total}
        if start + len(rows) < total:
            out["next_token"] = start + len(rows)
        return out

    async def get_report(self, report_id: int) -> JsonDict:
        row = await self._store.get_report(report_id)
        if row is None:
            raise NotFoundError("Event report not found")
        out = _report_json(row)
        if row[4] is not None:
            event = await self._events.get_event(row[4])
            if event is not None:
                out["event_json"] = event.get_pdu_json()
                out["sender"] = event.sender
        return out

    async def delete_report(self, report_id: int) -> None:
        if not await self._store.delete_report(report_id):
            raise NotFoundError("Event report not found")

    async def list_destinations(self, start: int, limit: int) -> JsonDict:
        rows, total = await self._destinations.list_destinations(start, limit)
        out: JsonDict = {"destinations": rows, "total": total}
        if start + len(rows) < total:
            out["next_token"] = str(start + len(rows))
        return out

    async def get_destination(self, destination: str) -> JsonDict:
        found = await self._destinations.get_destination(destination)
        if found is None:
            raise NotFoundError("Unknown destination")
        return found

    async def reset_connection(self, destination: str) -> None:
        if not await self._destinations.reset_connection(destination):
            raise NotFoundError("Unknown destination")
