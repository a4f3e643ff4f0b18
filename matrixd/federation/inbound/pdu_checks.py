"""Receipt checks 1-3 for a PDU (format, signatures, content hash) and the origin rule.

``check_pdu(keyring, room_version, pdu)`` returns the event to process: the
PDU as given, or redacted if its content hash does not match.  A malformed PDU
or a missing/invalid required signature raises ``PduDropped``: the event must
be dropped, not stored.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from matrixd.api.errors import EventFormatError, SignatureVerifyError
from matrixd.crypto.keyring import Keyring
from matrixd.events.event import Event
from matrixd.events.hashing import check_content_hash
from matrixd.events.room_versions import EventFormat, RoomVersion
from matrixd.events.validation import validate_pdu
from matrixd.types import IdentifierError, get_domain_from_id


#: ``unsigned`` keys only the receiving server may set.
_SERVER_ONLY_UNSIGNED = ("redacted_because", "transaction_id", "membership")


class PduDropped(Exception):
    """The PDU fails a check that means it must be dropped."""


async def check_pdu(keyring: Keyring, room_version: RoomVersion, pdu: Any,
                    expected_event_id: Optional[str] = None) -> Event:
    """Checks 1-3; ``expected_event_id``: the id the PDU must have (fetched by id)."""
    if not isinstance(pdu, dict):
        raise PduDropped("PDU is not a JSON object")
    pdu = dict(pdu)
    unsigned = pdu.get("unsigned")
    if isinstance(unsigned, dict):
        pdu["unsigned"] = {k: v for k, v in unsigned.items() if k not in _SERVER_ONLY_UNSIGNED}
    try:
        validate_pdu(room_version, pdu)
    except EventFormatError as e:
        raise PduDropped(f"invalid PDU: {e.msg}") from None
    event = Event(pdu, room_version)
    if expected_event_id is not None and event.event_id != expected_event_id:
        raise PduDropped(f"asked for {expected_event_id}, got {event.event_id}")
    try:
        checked = await keyring.verify_event_signatures(room_version, pdu)
    except SignatureVerifyError as e:
        raise PduDropped(f"signature check failed: {e.msg}") from None
    if not check_content_hash(pdu):
        return Event(checked, room_version, event_id=event.event_id)  # redacted: the content was tampered with
    return Event(pdu, room_version, event_id=event.event_id)


def domain_of(identifier: str) -> Optional[str]:
    try:
        return get_domain_from_id(identifier)
    except IdentifierError:
        return None


def check_origin(origin: str, room_version: RoomVersion, pdu: Mapping[str, Any]) -> None:
    """A transaction's PDUs are the origin's own: its users' events (or, in v1/v2, ids it minted).

    Raises PduDropped otherwise.
    """
    sender = pdu.get("sender")
    if isinstance(sender, str) and domain_of(sender) == origin:
        return
    if room_version.event_format == EventFormat.V1:
        event_id = pdu.get("event_id")
        if isinstance(event_id, str) and domain_of(event_id) == origin:
            return
    raise PduDropped(f"{origin} may not send an event from {sender!r}")
