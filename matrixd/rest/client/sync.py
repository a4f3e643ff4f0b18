"""``GET /_matrix/client/v3/sync``: parse the request, run the sync handler, format the response."""

from __future__ import annotations

from matrixd.events.client_format import serialize_event
from matrixd.events.event import Event
from matrixd.handlers.filtering import SyncFilter, apply_event_fields
from matrixd.handlers.sync.filters import FilterHandler
from matrixd.handlers.sync.handler import SyncHandler
from matrixd.handlers.sync.types import SyncConfig, SyncResult, TimelineBatch
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_boolean, parse_integer, parse_string
from matrixd.streams.token import StreamToken
from matrixd.types import JsonDict
from matrixd.util.clock import Clock

SET_PRESENCE_VALUES = ("offline", "online", "unavailable")


class SyncServlet(RestServlet):
    PATTERNS = client_patterns("/sync$")
    # A long-poll is only reads and waiting: stop it when the client goes away.
    CANCEL_ON_DISCONNECT = frozenset({"GET"})

    def __init__(self, auth: Auth, sync: SyncHandler, filters: FilterHandler, clock: Clock) -> None:
        self._auth = auth
        self._sync = sync
        self._filters = filters
        self._clock = clock

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        timeout = parse_integer(request, "timeout", default=0)
        since_raw = parse_string(request, "since")
        full_state = parse_boolean(request, "full_state", default=False)
        set_presence = parse_string(request, "set_presence", default="online", allowed_values=SET_PRESENCE_VALUES)
        since = StreamToken.parse(since_raw) if since_raw else None
        sync_filter = await self._filters.resolve(requester.user_id, parse_string(request, "filter"))
        config = SyncConfig(requester.user_id, requester.device_id, sync_filter, requester.is_guest)
        result = await self._sync.wait_for_sync(config, since, timeout, full_state, set_presence)
        return 200, SyncResponseFormatter(sync_filter, self._clock.time_msec(), result).format()


class SyncResponseFormatter:
    """Turns a :class:`SyncResult` into the response JSON, honouring ``event_format`` and ``event_fields``."""

    def __init__(self, sync_filter: SyncFilter, now_ms: int, result: SyncResult) -> None:
        self._as_client = sync_filter.event_format == "client"
        self._fields = sync_filter.event_fields
        self._now = now_ms
        self._result = result

    def _event(self, event: Event) -> JsonDict:
        redaction = self._result.redacted_because.get(event.event_id)
        out = serialize_event(
            event, self._now, as_client_event=self._as_client, include_room_id=False,
            redacted_because=redaction, extra_unsigned=self._result.extra_unsigned.get(event.event_id),
        )
        return apply_event_fields(out, self._fields)

    def _events(self, events: list[Event]) -> list[JsonDict]:
        return [self._event(e) for e in events]

    def _timeline(self, tl: TimelineBatch) -> JsonDict:
        out: JsonDict = {"events": self._events(tl.events), "limited": tl.limited}
        if tl.prev_batch is not None:
            out["prev_batch"] = tl.prev_batch.to_string()
        return out

    def format(self) -> JsonDict:
        r = self._result
        join: JsonDict = {}
        for room in r.joined:
            join[room.room_id] = {
                "timeline": self._timeline(room.timeline),
                "state": {"events": self._events(room.state)},
                "ephemeral": {"events": room.ephemeral},
                "account_data": {"events": room.account_data},
                "unread_notifications": room.unread_notifications,
                "summary": room.summary or {},
            }
            if room.unread_thread_notifications is not None:
                join[room.room_id]["unread_thread_notifications"] = room.unread_thread_notifications
        leave: JsonDict = {}
        for left in r.left:
            leave[left.room_id] = {
                "timeline": self._timeline(left.timeline),
                "state": {"events": self._events(left.state)},
                "account_data": {"events": left.account_data},
            }
        invite = {i.room_id: {"invite_state": {"events": i.invite_state}} for i in r.invited}
        knock = {k.room_id: {"knock_state": {"events": k.knock_state}} for k in r.knocked}
        device_lists: JsonDict = {"changed": r.device_lists_changed, "left": r.device_lists_left}
        out: JsonDict = {
            "next_batch": r.next_batch.to_string(),
            "rooms": {"join": join, "invite": invite, "leave": leave, "knock": knock},
            "presence": {"events": r.presence},
            "account_data": {"events": r.account_data},
            "to_device": {"events": r.to_device},
            "device_lists": device_lists,
        }
        if r.device_one_time_keys_count is not None:
            out["device_one_time_keys_count"] = r.device_one_time_keys_count
        if r.device_unused_fallback_key_types is not None:
            out["device_unused_fallback_key_types"] = r.device_unused_fallback_key_types
        return out


def format_sync_result(sync_filter: SyncFilter, now_ms: int, result: SyncResult) -> JsonDict:
    return SyncResponseFormatter(sync_filter, now_ms, result).format()


__all__ = ["SyncServlet", "format_sync_result"]
