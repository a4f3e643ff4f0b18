"""Content hashes, reference hashes and hash-derived event and room ids.

Two hashes protect an event (server-server API, "Signing Events"):

* the *content hash* covers the whole event except ``unsigned``,
  ``signatures`` and ``hashes``; it travels in ``hashes.sha256`` and is what
  lets a receiver notice that it was given a redacted copy;
* the *reference hash* covers the redacted event without ``signatures`` and
  ``unsigned``; from room v3 it *is* the event id, and in v1/v2 rooms it is
  listed next to each id in ``prev_events``/``auth_events``.

Importing this module registers :func:`compute_event_id` with
:mod:`matrixd.events.event` so that :attr:`Event.event_id` works.
"""

from __future__ import annotations

import binascii
import hashlib
from typing import Any, Mapping, Optional

from canonicaljson import encode_canonical_json
from unpaddedbase64 import decode_base64, encode_base64

from matrixd.api.errors import EventFormatError
from matrixd.events import event as _event_module
from matrixd.events.event import Event, JsonDict
from matrixd.events.redaction import prune_event_dict
from matrixd.events.room_versions import EventFormat, RoomVersion

_NOT_HASHED = ("unsigned", "signatures", "hashes")


def compute_content_hash(pdu: Mapping[str, Any]) -> bytes:
    """The raw SHA-256 content hash of ``pdu``."""
    stripped = {k: v for k, v in pdu.items() if k not in _NOT_HASHED}
    return hashlib.sha256(encode_canonical_json(stripped)).digest()


def content_hash_and_size(pdu: Mapping[str, Any]) -> tuple[bytes, int]:
    """``compute_content_hash(pdu)`` and the length of ``pdu``'s whole canonical JSON, from one encoding.

    A received PDU needs both (its hash check and its size limit). The keys the hash leaves out are
    small; each adds ``"key":value`` and a comma to the encoding of the rest. Raises ValueError or
    TypeError where ``encode_canonical_json`` would (NaN, lone surrogates, non-JSON values).
    """
    stripped = {k: v for k, v in pdu.items() if k not in _NOT_HASHED}
    encoded = encode_canonical_json(stripped)
    size = len(encoded)
    entries = len(stripped)
    for key in _NOT_HASHED:
        if key in pdu:
            # b'{"key":value}' less its braces, and a comma if it follows another entry.
            size += len(encode_canonical_json({key: pdu[key]})) - 2 + (1 if entries else 0)
            entries += 1
    return hashlib.sha256(encoded).digest(), size


def add_content_hash(pdu: Mapping[str, Any]) -> JsonDict:
    """A shallow copy of ``pdu`` with ``hashes.sha256`` set to its content hash.

    Other algorithms already in ``hashes`` are kept.
    """
    out = dict(pdu)
    hashes = pdu.get("hashes")
    new_hashes = dict(hashes) if isinstance(hashes, dict) else {}
    new_hashes["sha256"] = encode_base64(compute_content_hash(pdu))
    out["hashes"] = new_hashes
    return out


def check_content_hash(pdu: Mapping[str, Any], computed: Optional[bytes] = None) -> bool:
    """Whether ``hashes.sha256`` matches the content (padded or unpadded base64).

    ``computed``: the content hash, if the caller has it (``content_hash_and_size``).
    """
    hashes = pdu.get("hashes")
    if not isinstance(hashes, dict):
        return False
    claimed = hashes.get("sha256")
    if not isinstance(claimed, str):
        return False
    try:
        claimed_bytes = decode_base64(claimed.rstrip("="))
    except (binascii.Error, ValueError):
        return False
    return claimed_bytes == (computed if computed is not None else compute_content_hash(pdu))


def redacted_signing_bytes(room_version: RoomVersion, pdu: Mapping[str, Any]) -> bytes:
    """Canonical JSON of the redacted event without ``signatures``/``unsigned``.

    These are the bytes both signed (``matrixd.events.signing``) and hashed for
    the reference hash, so callers needing both encode once.
    """
    pruned = prune_event_dict(room_version, pdu)
    pruned.pop("signatures", None)
    pruned.pop("unsigned", None)
    return encode_canonical_json(pruned)


def compute_reference_hash(room_version: RoomVersion, pdu: Mapping[str, Any]) -> bytes:
    """The raw SHA-256 reference hash of ``pdu``."""
    return hashlib.sha256(redacted_signing_bytes(room_version, pdu)).digest()


def event_id_from_reference_hash(room_version: RoomVersion, reference_hash: bytes) -> str:
    """``$`` + the reference hash in the encoding of the room version's event format."""
    fmt = room_version.event_format
    if fmt == EventFormat.V2:
        return "$" + encode_base64(reference_hash)
    if fmt == EventFormat.V3:
        return "$" + encode_base64(reference_hash, urlsafe=True)
    raise ValueError(f"room version {room_version.identifier} does not derive event ids from hashes")


def compute_event_id(pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    """The event id of ``pdu``.

    For v1/v2 rooms it is the ``event_id`` field (EventFormatError if missing);
    for later rooms it is derived from the reference hash (v3: standard
    unpadded base64, v4+: URL-safe unpadded base64).
    """
    if room_version.event_format == EventFormat.V1:
        eid = pdu.get("event_id")
        if not isinstance(eid, str):
            raise EventFormatError("event in a v1-format room has no string event_id")
        return eid
    return event_id_from_reference_hash(room_version, compute_reference_hash(room_version, pdu))


def room_id_from_create_event_id(create_event_id: str) -> str:
    """v12+: the room id is the create event's id with ``!`` for ``$``."""
    if not create_event_id.startswith("$"):
        raise ValueError(f"not an event id: {create_event_id!r}")
    return "!" + create_event_id[1:]


def compute_room_id_for_create_event(room_version: RoomVersion, create_pdu: Mapping[str, Any]) -> str:
    """The room id a v12+ ``m.room.create`` PDU establishes."""
    if not room_version.room_id_is_create_event_hash:
        raise ValueError(f"room version {room_version.identifier} does not derive room ids from create events")
    return room_id_from_create_event_id(compute_event_id(create_pdu, room_version))


def event_reference(event: Event) -> Any:
    """How ``event`` is cited in ``prev_events``/``auth_events`` of its room version.

    v1/v2 rooms: ``[event_id, {"sha256": <reference hash>}]``; later: the id.
    """
    if event.room_version.event_format == EventFormat.V1:
        ref = compute_reference_hash(event.room_version, event.get_pdu_json())
        return [event.event_id, {"sha256": encode_base64(ref)}]
    return event.event_id


_event_module.set_event_id_computer(compute_event_id)
