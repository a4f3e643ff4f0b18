"""Building this server's own events: complete, hashed and signed.

The PDU is laid out in the room version's format, its content hash added,
then the redacted form is encoded once: those bytes are both what the server
signs and (from room v3) what the event id is the hash of.
"""

from __future__ import annotations

import hashlib
import random
import string
from typing import Any, Mapping, Optional, Sequence

from signedjson.types import SigningKey
from unpaddedbase64 import encode_base64

from matrixd.crypto.keys import key_id
from matrixd.events.event import Event, JsonDict
from matrixd.events.hashing import (
    add_content_hash,
    event_id_from_reference_hash,
    event_reference,
    redacted_signing_bytes,
)
from matrixd.events.room_versions import EventFormat, RoomVersion
from matrixd.events.signing import add_signature

_rng = random.SystemRandom()
_ID_CHARS = string.ascii_letters


def random_event_id(server_name: str) -> str:
    """A fresh ``$opaque:server`` id for v1/v2-format rooms."""
    return "$" + "".join(_rng.choices(_ID_CHARS, k=18)) + ":" + server_name


def create_local_event(
    room_version: RoomVersion,
    *,
    event_type: str,
    sender: str,
    room_id: Optional[str],
    content: Mapping[str, Any],
    state_key: Optional[str] = None,
    prev_events: Sequence[Event],
    auth_events: Sequence[Event],
    depth: int,
    origin_server_ts: int,
    server_name: str,
    signing_key: SigningKey,
    redacts: Optional[str] = None,
    unsigned: Optional[Mapping[str, Any]] = None,
) -> Event:
    """Lay out, hash and sign a new event of ``room_version``.

    ``room_id`` is None exactly for the ``m.room.create`` event (state key "")
    of a room version whose room id is the create event's hash (v12+); the room id is
    then ``event.room_id``. ``redacts`` goes into ``content`` from v11, at the
    top level before. ``unsigned`` is carried in the PDU but not signed.
    The caller chooses prev/auth events and depth and should run
    ``matrixd.events.validation.validate_pdu`` on the result's PDU before use.

    Raises ValueError on arguments inconsistent with the room version.
    """
    is_hashed_create = (
        room_version.room_id_is_create_event_hash and event_type == "m.room.create" and state_key == ""
    )
    if is_hashed_create:
        if room_id is not None:
            raise ValueError(f"an m.room.create event in room version {room_version.identifier} has no room_id")
    elif room_id is None:
        raise ValueError(f"a {event_type} event needs a room_id")

    pdu: JsonDict = {
        "type": event_type,
        "sender": sender,
        "content": dict(content),
        "depth": depth,
        "origin_server_ts": origin_server_ts,
        "prev_events": [event_reference(e) for e in prev_events],
        "auth_events": [event_reference(e) for e in auth_events],
    }
    if room_id is not None:
        pdu["room_id"] = room_id
    if state_key is not None:
        pdu["state_key"] = state_key
    if redacts is not None:
        if room_version.redacts_in_content:
            pdu["content"]["redacts"] = redacts
        else:
            pdu["redacts"] = redacts
    if room_version.event_format == EventFormat.V1:
        pdu["event_id"] = random_event_id(server_name)

    pdu = add_content_hash(pdu)
    signed_bytes = redacted_signing_bytes(room_version, pdu)
    signature = encode_base64(signing_key.sign(signed_bytes).signature)
    pdu = add_signature(pdu, server_name, key_id(signing_key), signature)
    if unsigned:
        pdu["unsigned"] = dict(unsigned)

    if room_version.event_format == EventFormat.V1:
        return Event(pdu, room_version)
    event_id = event_id_from_reference_hash(room_version, hashlib.sha256(signed_bytes).digest())
    return Event(pdu, room_version, event_id=event_id)
