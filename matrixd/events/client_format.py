"""Turning PDUs into the client-server API's event format.

Clients see ``ClientEvent`` / ``ClientEventWithoutRoomID``
(``data/api/client-server/definitions/client_event*.yaml``): the id, type,
content, sender, timestamp, state key and room id, plus an ``unsigned``
block computed by this server. Redaction events carry ``redacts`` both at
the top level and in ``content`` whatever the room version (room v11,
"Moving the redacts property"), so old and new clients both find it.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from matrixd.events.event import Event, JsonDict

# Keys of a PDU's own ``unsigned`` that clients are meant to see; anything
# else there was added by some server in transit and is not passed on.
_PASSED_UNSIGNED = ("invite_room_state", "knock_room_state")


def serialize_event(
    event: Event,
    now_ms: int,
    *,
    as_client_event: bool = True,
    include_room_id: bool = True,
    redacted_because: Optional[Event] = None,
    extra_unsigned: Optional[Mapping[str, Any]] = None,
) -> JsonDict:
    """The JSON a client is given for ``event`` at time ``now_ms``.

    ``as_client_event=False`` gives the federation format (the PDU, with this
    server's ``unsigned``) for filters asking ``event_format: federation``.
    ``include_room_id=False`` gives ``ClientEventWithoutRoomID`` (``/sync``).
    ``redacted_because`` is the redaction that pruned ``event``, if any, and is
    serialised the same way into ``unsigned.redacted_because``.
    ``extra_unsigned`` holds what the caller computed (``transaction_id`` for the
    sending device, ``prev_content``, ``replaces_state``, ``membership``...).

    The returned dict is new at the top level and in ``unsigned``; ``content``
    may be shared with the event and must be treated as read-only.
    """
    unsigned = _unsigned(event, now_ms)
    if extra_unsigned:
        unsigned.update(extra_unsigned)
    if redacted_because is not None:
        unsigned["redacted_because"] = serialize_event(
            redacted_because, now_ms, as_client_event=as_client_event, include_room_id=include_room_id
        )

    if not as_client_event:
        out = dict(event.get_pdu_json())
        out["unsigned"] = unsigned
        return out

    out = {
        "event_id": event.event_id,
        "type": event.type,
        "content": event.content,
        "sender": event.sender,
        "origin_server_ts": event.origin_server_ts,
        "unsigned": unsigned,
    }
    if event.is_state():
        out["state_key"] = event.state_key
    if include_room_id:
        out["room_id"] = event.room_id
    if event.type == "m.room.redaction":
        redacts = event.redacts
        if redacts is not None:
            out["redacts"] = redacts
            if event.content.get("redacts") != redacts:
                out["content"] = {**event.content, "redacts": redacts}
    return out


def _unsigned(event: Event, now_ms: int) -> JsonDict:
    pdu_unsigned = event.unsigned
    unsigned: JsonDict = {k: pdu_unsigned[k] for k in _PASSED_UNSIGNED if k in pdu_unsigned}
    # ``age_ts`` (local receipt time adjusted by the sender's ``age``) is the
    # better clock when present; otherwise fall back to the origin timestamp.
    age_ts = pdu_unsigned.get("age_ts")
    if not isinstance(age_ts, int) or isinstance(age_ts, bool):
        age_ts = event.origin_server_ts
    unsigned["age"] = now_ms - age_ts
    return unsigned
