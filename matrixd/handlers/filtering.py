"""Event filters of the client API (``POST /user/{userId}/filter``, ``/sync?filter=``, ``/messages?filter=``).

A filter is validated once with :func:`parse_filter` (400 ``M_BAD_JSON``
naming the bad field) and then applied many times, so matching is kept cheap:
type globs are compiled to one regex per list.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Optional, Sequence

import attrs

from matrixd.api.errors import BadJsonError
from matrixd.events.event import Event
from matrixd.types import JsonDict
from matrixd.util.dotted import split_dotted_path

MAX_FILTER_LIMIT = 1000
DEFAULT_TIMELINE_LIMIT = 10


def _glob_regex(patterns: Sequence[str]) -> "re.Pattern[str]":
    # Only '*' is a wildcard (spec: "A '*' can be used as a wildcard to match any sequence of characters").
    return re.compile("|".join("(?:" + ".*".join(map(re.escape, p.split("*"))) + ")\\Z" for p in patterns))


@attrs.frozen(slots=True)
class EventFilter:
    """types / not_types / senders / not_senders / rooms / not_rooms / limit / contains_url."""

    limit: Optional[int] = None
    types: Optional[tuple[str, ...]] = None
    not_types: tuple[str, ...] = ()
    senders: Optional[frozenset[str]] = None
    not_senders: frozenset[str] = frozenset()
    rooms: Optional[frozenset[str]] = None
    not_rooms: frozenset[str] = frozenset()
    contains_url: Optional[bool] = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False
    _types_re: Optional["re.Pattern[str]"] = attrs.field(default=None, eq=False, repr=False)
    _not_types_re: Optional["re.Pattern[str]"] = attrs.field(default=None, eq=False, repr=False)

    def allows_type(self, event_type: str) -> bool:
        if self._not_types_re is not None and self._not_types_re.match(event_type):
            return False
        if self._types_re is not None:
            return self._types_re.match(event_type) is not None
        return self.types is None

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def allows_sender(self, sender: str) -> bool:
        if sender in self.not_senders:
            return False
        return self.senders is None or sender in self.senders

    def allows_fields(self, event_type: str, sender: Optional[str], room_id: Optional[str],
                      content: Mapping[str, Any]) -> bool:
        if not self.allows_type(event_type):
            return False
        if sender is not None and not self.allows_sender(sender):
            return False
        if room_id is not None and not self.allows_room(room_id):
            return False
        if self.contains_url is not None:
            has_url = isinstance(content.get("url"), str)
            if has_url != self.contains_url:
                return False
        return True

    def allows(self, event: Event) -> bool:
        return self.allows_fields(event.type, event.sender, event.room_id, event.content)

    def filter(self, events: Iterable[Event]) -> list[Event]:
        return [e for e in events if self.allows(e)]

    def allows_json(self, ev: Mapping[str, Any]) -> bool:
        """For non-PDU events (ephemeral, account data) given as JSON objects."""
        content = ev.get("content")
        return self.allows_fields(str(ev.get("type", "")), ev.get("sender"), ev.get("room_id"),
                                  content if isinstance(content, dict) else {})

    def limit_or(self, default: int) -> int:
        return self.limit if self.limit is not None else default


ALLOW_ALL = EventFilter()


@attrs.frozen(slots=True)
class RoomFilter:
    rooms: Optional[frozenset[str]] = None
    not_rooms: frozenset[str] = frozenset()
    include_leave: bool = False
    timeline: EventFilter = ALLOW_ALL
    state: EventFilter = ALLOW_ALL
    ephemeral: EventFilter = ALLOW_ALL
    account_data: EventFilter = ALLOW_ALL

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms


@attrs.frozen(slots=True)
class SyncFilter:
    """A whole filter definition (the body of ``POST /filter``)."""

    event_fields: Optional[tuple[str, ...]] = None
    event_format: str = "client"
    presence: EventFilter = ALLOW_ALL
    account_data: EventFilter = ALLOW_ALL
    room: RoomFilter = RoomFilter()


DEFAULT_FILTER = SyncFilter()


def _str_list(raw: Any, field: str) -> Optional[tuple[str, ...]]:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise BadJsonError(f"filter field {field} must be a list of strings")
    return tuple(raw)


def _bool(raw: Any, field: str, default: bool) -> bool:
    if raw is None:
        return default
    if not isinstance(raw, bool):
        raise BadJsonError(f"filter field {field} must be a boolean")
    return raw


def parse_event_filter(raw: Any, field: str = "filter", room_event: bool = False) -> EventFilter:
    if raw is None:
        return ALLOW_ALL
    if not isinstance(raw, dict):
        raise BadJsonError(f"{field} must be an object")
    limit = raw.get("limit")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise BadJsonError(f"{field}.limit must be a positive integer")
        limit = min(limit, MAX_FILTER_LIMIT)
    types = _str_list(raw.get("types"), f"{field}.types")
    not_types = _str_list(raw.get("not_types"), f"{field}.not_types") or ()
    senders = _str_list(raw.get("senders"), f"{field}.senders")
    not_senders = _str_list(raw.get("not_senders"), f"{field}.not_senders") or ()
    rooms = _str_list(raw.get("rooms"), f"{field}.rooms") if room_event else None
    not_rooms = (_str_list(raw.get("not_rooms"), f"{field}.not_rooms") or ()) if room_event else ()
    contains_url = raw.get("contains_url")
    if contains_url is not None and not isinstance(contains_url, bool):
        raise BadJsonError(f"{field}.contains_url must be a boolean")
    return EventFilter(
        limit=limit,
        types=types,
        not_types=not_types,
        senders=frozenset(senders) if senders is not None else None,
        not_senders=frozenset(not_senders),
        rooms=frozenset(rooms) if rooms is not None else None,
        not_rooms=frozenset(not_rooms),
        contains_url=contains_url,
        lazy_load_members=_bool(raw.get("lazy_load_members"), f"{field}.lazy_load_members", False),
        include_redundant_members=_bool(raw.get("include_redundant_members"),
                                        f"{field}.include_redundant_members", False),
        unread_thread_notifications=_bool(raw.get("unread_thread_notifications"),
                                          f"{field}.unread_thread_notifications", False),
        types_re=_glob_regex(types) if types else None,
        not_types_re=_glob_regex(not_types) if not_types else None,
    )


def parse_room_event_filter(raw: Any, field: str = "filter") -> EventFilter:
    """A RoomEventFilter (as used by /messages and /context)."""
    return parse_event_filter(raw, field, room_event=True)


def parse_filter(raw: Any) -> SyncFilter:
    """Validate a whole filter definition; raises 400 M_BAD_JSON naming the bad field."""
    if not isinstance(raw, dict):
        raise BadJsonError("filter must be an object")
    event_fields = _str_list(raw.get("event_fields"), "event_fields")
    if event_fields is not None:
        for f in event_fields:
            if not f or f.startswith(".") or f.endswith("."):
                raise BadJsonError(f"event_fields entry {f!r} is not a dot-separated path")
    event_format = raw.get("event_format", "client")
    if event_format not in ("client", "federation"):
        raise BadJsonError("event_format must be 'client' or 'federation'")
    room_raw = raw.get("room")
    room = RoomFilter()
    if room_raw is not None:
        if not isinstance(room_raw, dict):
            raise BadJsonError("room must be an object")
        rooms = _str_list(room_raw.get("rooms"), "room.rooms")
        room = RoomFilter(
            rooms=frozenset(rooms) if rooms is not None else None,
            not_rooms=frozenset(_str_list(room_raw.get("not_rooms"), "room.not_rooms") or ()),
            include_leave=_bool(room_raw.get("include_leave"), "room.include_leave", False),
            timeline=parse_room_event_filter(room_raw.get("timeline"), "room.timeline"),
            state=parse_room_event_filter(room_raw.get("state"), "room.state"),
            ephemeral=parse_room_event_filter(room_raw.get("ephemeral"), "room.ephemeral"),
            account_data=parse_room_event_filter(room_raw.get("account_data"), "room.account_data"),
        )
    return SyncFilter(
        event_fields=event_fields,
        event_format=event_format,
        presence=parse_event_filter(raw.get("presence"), "presence"),
        account_data=parse_event_filter(raw.get("account_data"), "account_data"),
        room=room,
    )


def apply_event_fields(event_json: JsonDict, fields: Optional[Sequence[str]]) -> JsonDict:
    """Keep only the dot-separated ``fields`` of a serialised event (``event_fields``)."""
    if not fields:
        return event_json
    out: JsonDict = {}
    for path in fields:
        parts = split_dotted_path(path)
        src: Any = event_json
        for p in parts:
            if not isinstance(src, dict) or p not in src:
                break
            src = src[p]
        else:
            dst = out
            for p in parts[:-1]:
                dst = dst.setdefault(p, {})
            dst[parts[-1]] = src
    return out
