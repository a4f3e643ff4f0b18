"""PDU format validation: the first receipt check, and limits on local events.

An event that fails here is malformed for its room version and must be
dropped (federation) or refused (client API) before it is hashed, signed,
authorised or stored. The checks are the event format of each room version
(``data/api/server-server/definitions/pdu_v*.yaml``), the size limits of the
client-server API ("Size limits") and, from room v6, strict canonical JSON.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

from canonicaljson import encode_canonical_json

from matrixd.api.errors import BadJsonError, Codes, EventFormatError, MatrixError
from matrixd.events.room_versions import EventFormat, RoomVersion
from matrixd.types import is_valid_server_name

MAX_PDU_SIZE = 65536
MAX_ID_BYTES = 255
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10
MAX_DEPTH = 2**63 - 1
CANONICALJSON_MAX_INT = 2**53 - 1
CANONICALJSON_MIN_INT = -(2**53) + 1

_HASH_EVENT_ID = {
    EventFormat.V2: re.compile(r"^\$[A-Za-z0-9+/]{43}$"),
    EventFormat.V3: re.compile(r"^\$[A-Za-z0-9_-]{43}$"),
}
_V12_ROOM_ID = re.compile(r"^![A-Za-z0-9_-]{43}$")
_REQUIRED_KEYS = (
    "type",
    "sender",
    "content",
    "depth",
    "origin_server_ts",
    "hashes",
    "signatures",
    "prev_events",
    "auth_events",
)


class EventTooLargeError(EventFormatError):
    """An event or one of its size-limited fields is over the limit (413 M_TOO_LARGE)."""

    def __init__(self, msg: str) -> None:
        MatrixError.__init__(self, 413, msg, Codes.TOO_LARGE)


def validate_pdu(room_version: RoomVersion, pdu: Any, size: Optional[int] = None) -> None:
    """Raise EventFormatError unless ``pdu`` is a well-formed event of ``room_version``.

    Size violations raise the subclass EventTooLargeError. ``size``: the length of ``pdu``'s
    canonical JSON, if the caller has it (``hashing.content_hash_and_size``).
    """
    if not isinstance(pdu, dict):
        raise EventFormatError("event is not a JSON object")
    missing = [k for k in _REQUIRED_KEYS if k not in pdu]
    if missing:
        raise EventFormatError(f"event is missing required keys {missing}")

    event_type = _require_str(pdu, "type")
    _check_id_length("type", event_type)
    sender = _require_str(pdu, "sender")
    _check_id_length("sender", sender)
    if not is_valid_event_sender(sender):
        raise EventFormatError(f"sender {sender!r} is not a valid user id")
    if "state_key" in pdu:
        _check_id_length("state_key", _require_str(pdu, "state_key"))
    _check_room_id(room_version, pdu, event_type)
    if room_version.event_format == EventFormat.V1:
        event_id = _require_str(pdu, "event_id")
        _check_id_length("event_id", event_id)
        if not event_id.startswith("$") or ":" not in event_id:
            raise EventFormatError(f"event_id {event_id!r} is not of the form $opaque:domain")

    if not isinstance(pdu["content"], dict):
        raise EventFormatError("content is not an object")
    _check_int(pdu, "origin_server_ts")
    depth = _check_int(pdu, "depth")
    if not 0 <= depth <= MAX_DEPTH:
        raise EventFormatError(f"depth {depth} is outside [0, {MAX_DEPTH}]")
    _check_hashes(pdu["hashes"])
    _check_signatures(pdu["signatures"])
    if "unsigned" in pdu and not isinstance(pdu["unsigned"], dict):
        raise EventFormatError("unsigned is not an object")
    _check_refs(room_version, pdu, "prev_events", MAX_PREV_EVENTS)
    _check_refs(room_version, pdu, "auth_events", MAX_AUTH_EVENTS)
    _check_redacts(room_version, pdu, event_type)

    if room_version.strict_canonicaljson:
        check_canonical_json_values(pdu)
    if size is None:
        size = canonical_size(pdu)
    if size > MAX_PDU_SIZE:
        raise EventTooLargeError(f"event is {size} bytes of canonical JSON, over the {MAX_PDU_SIZE} limit")


def validate_client_event_fields(
    room_version: RoomVersion, event_type: Any, state_key: Optional[Any], content: Any
) -> None:
    """Cheap checks on what a client asks to send, before an event is built.

    Raises EventTooLargeError (413 M_TOO_LARGE) for size limits and BadJsonError
    (400 M_BAD_JSON) for shapes and, from v6, non-canonical numbers. The built
    event still goes through :func:`validate_pdu` for the overall size limit.
    """
    if not isinstance(event_type, str):
        raise BadJsonError("event type must be a string")
    _check_id_length("type", event_type)
    if state_key is not None:
        if not isinstance(state_key, str):
            raise BadJsonError("state_key must be a string")
        _check_id_length("state_key", state_key)
    if not isinstance(content, dict):
        raise BadJsonError("event content must be a JSON object")
    try:
        if room_version.strict_canonicaljson:
            check_canonical_json_values(content, "content")
        size = canonical_size(content)
    except EventFormatError as e:
        raise BadJsonError(e.msg) from None
    if size > MAX_PDU_SIZE:
        raise EventTooLargeError(f"event content is {size} bytes, over the {MAX_PDU_SIZE} limit")


def is_valid_event_sender(user_id: str) -> bool:
    """User id grammar accepted in events: ``@localpart:server_name``.

    Historical localparts must be accepted over federation (appendix
    "Historical User IDs"): any code points but ``:`` and NUL, even empty.
    """
    if len(user_id) < 2 or user_id[0] != "@":
        return False
    localpart, sep, domain = user_id[1:].partition(":")
    if not sep or "\x00" in localpart:
        return False
    return is_valid_server_name(domain)


def canonical_size(value: Any) -> int:
    """Length in bytes of ``value`` as canonical JSON; EventFormatError if unencodable."""
    try:
        return len(encode_canonical_json(value))
    except (ValueError, TypeError) as e:  # NaN/Infinity, lone surrogates, non-JSON types
        raise EventFormatError(f"event cannot be encoded as canonical JSON: {e}") from None


def check_canonical_json_values(value: Any, path: str = "event") -> None:
    """Raise EventFormatError if ``value`` holds a float or an integer outside
    ``[-(2**53)+1, 2**53-1]`` (strict canonical JSON, room v6+)."""
    if _maybe_not_canonical(value):
        _check_canonical_json_values_at(value, path)


def _maybe_not_canonical(value: Any) -> bool:
    """False if ``value`` is certainly canonical; True sends it to the exact check (which names the path).

    Every received PDU goes through this, so the common case builds no path strings.
    """
    stack: list[Any] = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        v = pop()
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is int:
            if not CANONICALJSON_MIN_INT <= v <= CANONICALJSON_MAX_INT:
                return True
        elif t is dict:
            extend(v.values())
        elif t is list:
            extend(v)
        else:  # floats, tuples, subclasses, non-JSON values: the exact check decides
            return True
    return False


def _check_canonical_json_values_at(value: Any, path: str) -> None:
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, bool) or v is None or isinstance(v, str):
            continue
        if isinstance(v, int):
            if not CANONICALJSON_MIN_INT <= v <= CANONICALJSON_MAX_INT:
                raise EventFormatError(f"{where}: integer {v} is outside the canonical JSON range")
        elif isinstance(v, float):
            raise EventFormatError(f"{where}: {v!r} is not an integer; floats are not allowed")
        elif isinstance(v, dict):
            stack.extend((f"{where}.{k}", item) for k, item in v.items())
        elif isinstance(v, (list, tuple)):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(v))
        else:
            raise EventFormatError(f"{where}: {type(v).__name__} is not a JSON value")


def _require_str(pdu: Mapping[str, Any], key: str) -> str:
    v = pdu.get(key)
    if not isinstance(v, str):
        raise EventFormatError(f"{key} must be a string, not {type(v).__name__}")
    return v


def _check_id_length(key: str, value: str) -> None:
    n = len(value.encode("utf-8", "surrogatepass"))
    if n > MAX_ID_BYTES:
        raise EventTooLargeError(f"{key} is {n} bytes, over the {MAX_ID_BYTES}-byte limit")


def _check_int(pdu: Mapping[str, Any], key: str) -> int:
    v = pdu[key]
    if not isinstance(v, int) or isinstance(v, bool):
        raise EventFormatError(f"{key} must be an integer, not {v!r}")
    return v


def _check_room_id(room_version: RoomVersion, pdu: Mapping[str, Any], event_type: str) -> None:
    if room_version.room_id_is_create_event_hash:
        # Only the create event proper (state_key "") goes without a room id.
        if event_type == "m.room.create" and pdu.get("state_key") == "":
            if "room_id" in pdu:
                raise EventFormatError("an m.room.create event of this room version must not have a room_id")
            return
        room_id = _require_str(pdu, "room_id")
        if not _V12_ROOM_ID.match(room_id):
            raise EventFormatError(f"room_id {room_id!r} is not a create event reference hash")
        return
    room_id = _require_str(pdu, "room_id")
    _check_id_length("room_id", room_id)
    if not room_id.startswith("!") or ":" not in room_id:
        raise EventFormatError(f"room_id {room_id!r} is not of the form !opaque:domain")


def _check_hashes(hashes: Any) -> None:
    if not isinstance(hashes, dict) or not isinstance(hashes.get("sha256"), str):
        raise EventFormatError("hashes must be an object with a string sha256")


def _check_signatures(signatures: Any) -> None:
    if not isinstance(signatures, dict):
        raise EventFormatError("signatures must be an object")
    for server, sigs in signatures.items():
        if not isinstance(sigs, dict) or not all(isinstance(s, str) for s in sigs.values()):
            raise EventFormatError(f"signatures of {server!r} must be an object of strings")


def _check_refs(room_version: RoomVersion, pdu: Mapping[str, Any], key: str, limit: int) -> None:
    refs = pdu[key]
    if not isinstance(refs, list):
        raise EventFormatError(f"{key} must be a list")
    if len(refs) > limit:
        raise EventFormatError(f"{key} has {len(refs)} entries, more than {limit}")
    fmt = room_version.event_format
    for ref in refs:
        if fmt == EventFormat.V1:
            if not (isinstance(ref, list) and len(ref) == 2 and isinstance(ref[1], dict)):
                raise EventFormatError(f"{key} entries must be [event_id, {{hashes}}] pairs, not {ref!r}")
            event_id = ref[0]
            if not isinstance(event_id, str) or not event_id.startswith("$"):
                raise EventFormatError(f"{key} has an invalid event id {event_id!r}")
            _check_id_length(key, event_id)
        elif not isinstance(ref, str) or not _HASH_EVENT_ID[fmt].match(ref):
            raise EventFormatError(f"{key} has an invalid event id {ref!r}")


def _check_redacts(room_version: RoomVersion, pdu: Mapping[str, Any], event_type: str) -> None:
    if event_type != "m.room.redaction":
        return
    if room_version.redacts_in_content:
        holder, where = pdu["content"], "content.redacts"
    else:
        holder, where = pdu, "redacts"
    if "redacts" in holder and not isinstance(holder["redacts"], str):
        raise EventFormatError(f"{where} must be a string")
