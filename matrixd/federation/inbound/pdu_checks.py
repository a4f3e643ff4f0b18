"""Receipt checks 1-3 for a PDU (format, signatures, content hash) and the origin rule.

``check_pdu(keyring, room_version, pdu)`` returns the event to process: the
PDU as given, or redacted if its content hash does not match.  A malformed PDU
or a missing/invalid required signature raises ``PduDropped``: the event must
be dropped, not stored.

``check_pdus(keyring, room_version, pdus)`` applies the same checks to many
PDUs at once (a ``send_join`` answer, a fetched state): each signing server's
keys are looked up once for the batch, and each PDU's redacted form is
encoded once for both its event id and its signature check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Mapping, Optional, Union

from signedjson.types import VerifyKey

from matrixd.api.errors import EventFormatError, SignatureVerifyError
from matrixd.crypto.keyring import Keyring
from matrixd.crypto.server_keys import FetchedKey
from matrixd.events.event import Event
from matrixd.events.hashing import check_content_hash, event_id_from_reference_hash, redacted_signing_bytes
from matrixd.events.redaction import prune_event_dict
from matrixd.events.room_versions import EventFormat, RoomVersion
from matrixd.events.signing import SUPPORTED_ALGORITHM, servers_required_to_sign, verify_event_signature
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


async def check_pdus(keyring: Keyring, room_version: RoomVersion,
                     pdus: Sequence[Any]) -> list[Union[Event, PduDropped]]:
    """``check_pdu`` of each of ``pdus``: the event to process, or why it must be dropped (same order).

    The keys of every server that must sign are looked up once for the batch
    (whatever validity they have). A PDU signed only with keys that lookup
    could not find is dropped; one whose key is known but not valid at its
    ``origin_server_ts`` (room v5+), or that names no required signer (a
    third-party invite), goes through ``check_pdu`` alone, which may fetch.
    """
    results: list[Union[Event, PduDropped, None]] = [None] * len(pdus)
    # index -> (pdu, the bytes its signatures cover, the event, the servers that must sign it)
    prepared: dict[int, tuple[dict[str, Any], bytes, Event, set[str]]] = {}
    key_ids_by_server: dict[str, set[str]] = {}
    for i, raw in enumerate(pdus):
        if not isinstance(raw, dict):
            results[i] = PduDropped("PDU is not a JSON object")
            continue
        pdu = dict(raw)
        unsigned = pdu.get("unsigned")
        if isinstance(unsigned, dict):
            pdu["unsigned"] = {k: v for k, v in unsigned.items() if k not in _SERVER_ONLY_UNSIGNED}
        try:
            validate_pdu(room_version, pdu)
        except EventFormatError as e:
            results[i] = PduDropped(f"invalid PDU: {e.msg}")
            continue
        signing = redacted_signing_bytes(room_version, pdu)
        event_id = (pdu["event_id"] if room_version.event_format == EventFormat.V1
                    else event_id_from_reference_hash(room_version, hashlib.sha256(signing).digest()))
        event = Event(pdu, room_version, event_id=event_id)
        required = servers_required_to_sign(room_version, event)
        if not required:
            continue  # left for check_pdu
        prepared[i] = (pdu, signing, event, required)
        sigs = pdu["signatures"]
        for server in required:
            server_sigs = sigs.get(server)
            if isinstance(server_sigs, dict):
                key_ids_by_server.setdefault(server, set()).update(
                    k for k in server_sigs if k.startswith(SUPPORTED_ALGORITHM + ":"))

    keys: dict[str, dict[str, FetchedKey]] = {}
    for server, key_ids in key_ids_by_server.items():
        keys[server] = await keyring.get_verify_keys(server, key_ids, 0) if key_ids else {}

    for i, (pdu, signing, event, required) in prepared.items():
        min_valid = 0
        if room_version.enforce_key_validity:
            ts = pdu.get("origin_server_ts")
            min_valid = ts if isinstance(ts, int) and not isinstance(ts, bool) else 0
        usable: dict[str, dict[str, VerifyKey]] = {}
        known_at_all = True
        for server in required:
            server_sigs = pdu["signatures"].get(server)
            found = keys.get(server, {})
            signed_with = [kid for kid in (server_sigs if isinstance(server_sigs, dict) else ()) if kid in found]
            known_at_all = known_at_all and bool(signed_with)
            usable[server] = {
                kid: found[kid].verify_key for kid in signed_with if found[kid].valid_until_ts >= min_valid
            }
        if not known_at_all:
            # No key of a signer could be found at all (the lookup above fetched): as check_pdu would, drop it,
            # without asking the server again for every PDU of the batch.
            try:
                for server in sorted(required):
                    verify_event_signature(room_version, pdu, server, usable[server], signing)
            except SignatureVerifyError as e:
                results[i] = PduDropped(f"signature check failed: {e.msg}")
                continue
        if not all(usable.values()):
            continue  # keys known but not valid at the PDU's time: check_pdu looks again (or refuses)
        try:
            for server in sorted(required):
                verify_event_signature(room_version, pdu, server, usable[server], signing)
        except SignatureVerifyError as e:
            results[i] = PduDropped(f"signature check failed: {e.msg}")
            continue
        if check_content_hash(pdu):
            results[i] = event
        else:  # redacted: the content was tampered with
            results[i] = Event(prune_event_dict(room_version, pdu), room_version, event_id=event.event_id)

    out: list[Union[Event, PduDropped]] = []
    for i, result in enumerate(results):
        if result is None:
            try:
                result = await check_pdu(keyring, room_version, pdus[i])
            except PduDropped as e:
                result = e
        out.append(result)
    return out


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
