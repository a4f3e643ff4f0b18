"""Small admin reads: event reports, server version, background updates and
federation destinations.

Federation destinations are the federation sender's per-destination retry
state (``federation_destinations``) and the rooms it sends each destination
events of (``federation_destination_rooms``).  Resetting a destination's retry
timer clears the stored backoff and wakes this process's sender queue for it
(a ``federation_sender`` worker re-reads the backoff when its timer fires).
"""

from __future__ import annotations

import platform
from typing import Any, Optional, Protocol, Sequence

from matrixd.api.errors import Codes, MatrixError, NotFoundError
from matrixd.federation.software import server_version
from matrixd.storage.admin import DESTINATION_ORDER_COLUMNS, AdminStore
from matrixd.storage.events import EventStore
from matrixd.types import JsonDict


class BackoffReset(Protocol):
    def __call__(self, destination: str) -> None:
        """Tell this process's federation sender that ``destination``'s backoff was cleared."""


def _destination_json(row: Sequence[Any]) -> JsonDict:
    return {"destination": row[0], "retry_last_ts": int(row[1]), "retry_interval": int(row[2]),
            "failure_ts": None if row[3] is None else int(row[3]),
            "last_successful_stream_ordering": None if row[4] is None else int(row[4])}


def _report_json(row: Sequence[Any]) -> JsonDict:
    return {"id": int(row[0]), "received_ts": int(row[1]), "user_id": row[2], "room_id": row[3],
            "event_id": row[4], "reason": row[6], "score": row[7]}


class AdminMiscHandler:
    def __init__(self, *, store: AdminStore, events: EventStore,
                 on_backoff_reset: Optional[BackoffReset] = None) -> None:
        self._store = store
        self._events = events
        self._on_backoff_reset = on_backoff_reset

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

    async def list_destinations(self, *, start: int, limit: int, order_by: str, direction: str,
                                search: Optional[str]) -> JsonDict:
        if order_by not in DESTINATION_ORDER_COLUMNS:
            raise MatrixError(400, f"Unknown value for order_by: {order_by[:100]!r}", Codes.INVALID_PARAM)
        rows, total = await self._store.list_destinations(start=start, limit=limit, order_by=order_by,
                                                          direction=direction, search=search)
        out: JsonDict = {"destinations": [_destination_json(r) for r in rows], "total": total}
        if start + len(rows) < total:
            out["next_token"] = str(start + len(rows))
        return out

    async def get_destination(self, destination: str) -> JsonDict:
        row = await self._store.get_destination(destination)
        if row is None:
            raise NotFoundError("Unknown destination")
        return _destination_json(row)

    async def destination_rooms(self, destination: str, *, start: int, limit: int, direction: str) -> JsonDict:
        if await self._store.get_destination(destination) is None:
            raise NotFoundError("Unknown destination")
        rows, total = await self._store.destination_rooms(destination, start=start, limit=limit,
                                                          direction=direction)
        out: JsonDict = {"rooms": [{"room_id": r, "stream_ordering": o} for r, o in rows], "total": total}
        if start + len(rows) < total:
            out["next_token"] = str(start + len(rows))
        return out

    async def reset_connection(self, destination: str) -> None:
        if not await self._store.reset_destination_retry(destination):
            raise NotFoundError("Unknown destination")
        if self._on_backoff_reset is not None:
            self._on_backoff_reset(destination)
