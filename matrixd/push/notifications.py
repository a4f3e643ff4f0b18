"""``GET /notifications``: the events that notified a user, newest first, paged by stream ordering."""

from __future__ import annotations

from typing import Optional, Protocol, Sequence

from matrixd.api.errors import InvalidParamError
from matrixd.events.event import Event
from matrixd.storage.event_push_actions import EventPushActionsStore
from matrixd.storage.events import EventStore
from matrixd.types import JsonDict, Requester

MAX_LIMIT = 100
DEFAULT_LIMIT = 20


class EventSerializer(Protocol):
    """``matrixd.handlers.rooms.serialize.ClientEventSerializer``."""

    async def serialize_events(
        self, events: Sequence[Event], requester: Optional[Requester], *, include_room_id: bool = True,
        as_client_event: bool = True, event_fields: Optional[Sequence[str]] = None,
    ) -> list[JsonDict]: ...


class NotificationsHandler:
    def __init__(self, store: EventPushActionsStore, events: EventStore, serializer: EventSerializer) -> None:
        self._store = store
        self._events = events
        self._serializer = serializer

    async def get_notifications(
        self, requester: Requester, from_token: Optional[str], limit: Optional[int], only: Optional[str]
    ) -> JsonDict:
        """One page; ``next_token`` (a stream ordering) is present while older notifications may exist."""
        before: Optional[int] = None
        if from_token is not None:
            try:
                before = int(from_token)
            except ValueError:
                raise InvalidParamError(f"Invalid 'from' token {from_token!r}")
        n = DEFAULT_LIMIT if limit is None else limit
        if n < 0:
            raise InvalidParamError("'limit' must not be negative")
        n = min(n, MAX_LIMIT)
        rows = await self._store.get_notifications(requester.user_id, before, n, only == "highlight")
        events = await self._events.get_events([r.event_id for r in rows])
        found = [r for r in rows if r.event_id in events]
        serialized = await self._serializer.serialize_events([events[r.event_id] for r in found], requester)
        notifications = [
            {"actions": r.actions, "event": ev, "read": r.read, "room_id": r.room_id, "ts": r.ts}
            for r, ev in zip(found, serialized)
        ]
        out: JsonDict = {"notifications": notifications}
        if rows and len(rows) == n:
            out["next_token"] = str(rows[-1].stream_ordering)
        return out
