"""The event value type shared by every layer.

An :class:`Event` wraps the PDU JSON exactly as it was received or built, so it
can be re-serialised byte-for-byte (for signatures and federation), and exposes
typed accessors for the fields the rest of the server reads.  It is cheap to
create: nothing is copied or validated here (validation lives in
``matrixd.events.validation``), and the event id of hash-based formats is
computed lazily once.

Contract: neither the event nor the dicts it hands out may be mutated.
Server-local facts about the event (outlier, rejection, stream position) live
in :class:`InternalMetadata`, which is not part of the PDU.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping, Optional, cast

from matrixd.events.room_versions import EventFormat, RoomVersion

JsonDict = dict[str, Any]
StateKey = tuple[str, str]
StateMap = Mapping[StateKey, str]


class InternalMetadata:
    """Mutable, server-local facts about an event; never sent over federation."""

    __slots__ = (
        "outlier",
        "rejected_reason",
        "soft_failed",
        "stream_ordering",
        "txn_id",
        "device_id",
        "token_id",
    )

    def __init__(self) -> None:
        self.outlier: bool = False
        self.rejected_reason: Optional[str] = None
        self.soft_failed: bool = False
        self.stream_ordering: Optional[int] = None
        self.txn_id: Optional[str] = None
        self.device_id: Optional[str] = None
        self.token_id: Optional[int] = None

    def to_dict(self) -> JsonDict:
        return {name: getattr(self, name) for name in self.__slots__ if getattr(self, name) not in (None, False)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "InternalMetadata":
        m = cls()
        for k, v in d.items():
            if k in cls.__slots__:
                setattr(m, k, v)
        return m


# Set by matrixd.events.hashing at import: computes "$" + reference hash for a PDU.
# Kept as a hook so this module has no dependency on hashing/redaction code.
_event_id_computer: Optional[Callable[[JsonDict, RoomVersion], str]] = None


def set_event_id_computer(fn: Callable[[JsonDict, RoomVersion], str]) -> None:
    global _event_id_computer
    _event_id_computer = fn


class Event:
    """An immutable Matrix event (PDU) of a known room version."""

    __slots__ = ("_d", "room_version", "_event_id", "internal_metadata", "_prev_ids", "_auth_ids", "_signing")

    def __init__(
        self,
        pdu: JsonDict,
        room_version: RoomVersion,
        event_id: Optional[str] = None,
        internal_metadata: Optional[InternalMetadata] = None,
    ) -> None:
        self._d = pdu
        self.room_version = room_version
        if event_id is None and room_version.event_format == EventFormat.V1:
            event_id = pdu.get("event_id")
        self._event_id = event_id
        self.internal_metadata = internal_metadata if internal_metadata is not None else InternalMetadata()
        self._prev_ids: Optional[list[str]] = None
        self._auth_ids: Optional[list[str]] = None
        # Set by compact(): the PDU's hashes and signatures as one JSON string,
        # removed from ``_d``.
        self._signing: Optional[str] = None

    @classmethod
    def compact(
        cls,
        pdu: JsonDict,
        room_version: RoomVersion,
        event_id: str,
        internal_metadata: Optional[InternalMetadata] = None,
    ) -> "Event":
        """The form long-lived caches hold: the same event, with its hashes and
        signatures kept as one JSON string instead of three or four small dicts.

        Only federation, re-checks and redaction read them, so this saves about a
        quarter of a cached message event's memory for a parse on those paths.
        ``pdu`` must be a dict nobody else holds: it becomes the event's own
        (hashes and signatures are moved out of it).
        """
        signing = {k: pdu.pop(k) for k in _SIGNING_KEYS if k in pdu}
        event = cls(pdu, room_version, event_id, internal_metadata)
        if signing:
            event._signing = json.dumps(signing, separators=(",", ":"))
        return event

    # -- identity ---------------------------------------------------------------

    @property
    def event_id(self) -> str:
        eid = self._event_id
        if eid is None:
            if _event_id_computer is None:  # pragma: no cover - import-order guard
                import matrixd.events.hashing  # noqa: F401  (registers the computer)
            assert _event_id_computer is not None
            eid = _event_id_computer(self._d, self.room_version)
            self._event_id = eid
        return eid

    def __hash__(self) -> int:
        return hash(self.event_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and other.event_id == self.event_id

    def __repr__(self) -> str:
        sk = self.state_key
        return f"<Event {self.event_id} {self.type}{'' if sk is None else ' ' + repr(sk)} from {self.sender}>"

    # -- raw access -------------------------------------------------------------

    def get_pdu_json(self) -> JsonDict:
        """The PDU as received/built (including signatures, excluding nothing). Do not mutate.

        For a :meth:`compact` event this builds a new dict each call; readers that
        need no hashes or signatures use :meth:`get_fields_without_signing`.
        """
        signing = self._signing
        if signing is None:
            return self._d
        full = dict(self._d)
        full.update(json.loads(signing))
        return full

    def get_fields_without_signing(self) -> JsonDict:
        """The PDU without ``hashes`` and ``signatures`` (which it may or may not
        include): the cheap view for readers that never look at them. Do not mutate."""
        return self._d

    def signing_size(self) -> int:
        """Bytes held by the serialised hashes and signatures of a compact event (else 0)."""
        return 0 if self._signing is None else 49 + len(self._signing)

    def get(self, key: str, default: Any = None) -> Any:
        if self._signing is not None and key in _SIGNING_KEYS:
            return json.loads(self._signing).get(key, default)
        return self._d.get(key, default)

    def has(self, key: str) -> bool:
        """Whether the PDU has the top-level field ``key`` (whatever its value)."""
        if self._signing is not None and key in _SIGNING_KEYS:
            return key in json.loads(self._signing)
        return key in self._d

    # -- typed accessors --------------------------------------------------------

    @property
    def type(self) -> str:
        return self._d["type"]  # type: ignore[no-any-return]

    @property
    def sender(self) -> str:
        return self._d["sender"]  # type: ignore[no-any-return]

    @property
    def room_id(self) -> str:
        """The room id; for a v12 create event (which has none) it is derived from the event id."""
        rid = self._d.get("room_id")
        if rid is None and self.room_version.room_id_is_create_event_hash and self._d.get("type") == "m.room.create":
            return "!" + self.event_id[1:]
        return cast(str, rid)

    @property
    def state_key(self) -> Optional[str]:
        return self._d.get("state_key")

    def is_state(self) -> bool:
        return "state_key" in self._d

    @property
    def content(self) -> JsonDict:
        c = self._d.get("content")
        return c if isinstance(c, dict) else {}

    @property
    def depth(self) -> int:
        return self._d.get("depth", 0)  # type: ignore[no-any-return]

    @property
    def origin_server_ts(self) -> int:
        return self._d.get("origin_server_ts", 0)  # type: ignore[no-any-return]

    @property
    def unsigned(self) -> JsonDict:
        u = self._d.get("unsigned")
        return u if isinstance(u, dict) else {}

    @property
    def hashes(self) -> JsonDict:
        return self.get("hashes") or {}

    @property
    def signatures(self) -> JsonDict:
        return self.get("signatures") or {}

    @property
    def membership(self) -> Optional[str]:
        """``content.membership`` for m.room.member events, else None."""
        m = self.content.get("membership")
        return m if isinstance(m, str) else None

    @property
    def redacts(self) -> Optional[str]:
        """The event an m.room.redaction targets (content.redacts from v11, top level before)."""
        if self._d.get("type") != "m.room.redaction":
            return None
        if self.room_version.redacts_in_content:
            r = self.content.get("redacts")
            if isinstance(r, str):
                return r
        r = self._d.get("redacts")
        return r if isinstance(r, str) else None

    def prev_event_ids(self) -> list[str]:
        """The prev_events' ids, parsed once (state resolution reads them often). Do not mutate."""
        ids = self._prev_ids
        if ids is None:
            ids = self._prev_ids = _ids_of(self._d.get("prev_events") or (), self.room_version)
        return ids

    def auth_event_ids(self) -> list[str]:
        """The auth_events' ids, parsed once. Do not mutate."""
        ids = self._auth_ids
        if ids is None:
            ids = self._auth_ids = _ids_of(self._d.get("auth_events") or (), self.room_version)
        return ids

    def state_key_tuple(self) -> StateKey:
        """``(type, state_key)``; only meaningful for state events."""
        return (self._d["type"], self._d["state_key"])

    @property
    def rejected(self) -> bool:
        return self.internal_metadata.rejected_reason is not None


#: The PDU fields a compact event keeps serialised (see Event.compact).
_SIGNING_KEYS = ("hashes", "signatures")

#: Top-level PDU fields whose string values repeat across a room's events; holders of many
#: events (the event cache, a large fetched batch) keep one object per distinct value.
REPEATED_STRING_FIELDS = ("room_id", "sender", "type", "state_key", "origin")
#: Top-level PDU fields that are lists of event ids (auth events repeat across a room's events).
EVENT_ID_LIST_FIELDS = ("auth_events", "prev_events")


def _ids_of(refs: Iterable[Any], room_version: RoomVersion) -> list[str]:
    if room_version.event_format == EventFormat.V1:
        # [[event_id, {"sha256": ...}], ...]
        return [r[0] for r in refs if isinstance(r, (list, tuple)) and r and isinstance(r[0], str)]
    return [r for r in refs if isinstance(r, str)]
