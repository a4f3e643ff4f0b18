"""Event signatures: signing outgoing PDUs and checking received ones.

A server signs the *redacted* form of an event (server-server API, "Signing
Events"), so a signature still verifies after the event is redacted; the
content hash, which is inside the signed part, is what detects redaction.
On receipt, a bad signature drops the event while a bad content hash only
demotes it to its redacted form (:func:`check_event_hashes_and_signatures`).
"""

from __future__ import annotations

import binascii
from typing import Any, Mapping, Optional

import nacl.exceptions
from signedjson.types import SigningKey, VerifyKey
from unpaddedbase64 import decode_base64, encode_base64

from matrixd.api.errors import SignatureVerifyError
from matrixd.crypto.keys import key_id
from matrixd.events.event import Event, JsonDict
from matrixd.events.hashing import check_content_hash, redacted_signing_bytes
from matrixd.events.redaction import prune_event_dict
from matrixd.events.room_versions import EventFormat, RoomVersion
from matrixd.types import IdentifierError, get_domain_from_id

SUPPORTED_ALGORITHM = "ed25519"


def sign_event_dict(
    room_version: RoomVersion, pdu: Mapping[str, Any], server_name: str, signing_key: SigningKey
) -> JsonDict:
    """A shallow copy of ``pdu`` with ``server_name``'s signature over its redacted form added.

    Existing signatures (of this or other servers) are kept. ``pdu`` must already
    carry its content hash (``matrixd.events.hashing.add_content_hash``), since the
    hash is part of what is signed.
    """
    signature = signing_key.sign(redacted_signing_bytes(room_version, pdu)).signature
    return add_signature(pdu, server_name, key_id(signing_key), encode_base64(signature))


def add_signature(pdu: Mapping[str, Any], server_name: str, key_id: str, signature_b64: str) -> JsonDict:
    """A shallow copy of ``pdu`` with one more signature; the input is not mutated."""
    out = dict(pdu)
    sigs = pdu.get("signatures")
    new_sigs: JsonDict = dict(sigs) if isinstance(sigs, dict) else {}
    server_sigs = new_sigs.get(server_name)
    new_server_sigs = dict(server_sigs) if isinstance(server_sigs, dict) else {}
    new_server_sigs[key_id] = signature_b64
    new_sigs[server_name] = new_server_sigs
    out["signatures"] = new_sigs
    return out


def verify_event_signature(
    room_version: RoomVersion,
    pdu: Mapping[str, Any],
    server_name: str,
    verify_keys: Mapping[str, VerifyKey],
    signing_bytes: Optional[bytes] = None,
) -> None:
    """Check ``server_name``'s signature on ``pdu``; raise SignatureVerifyError if it fails.

    ``signing_bytes``: ``redacted_signing_bytes(room_version, pdu)`` if the
    caller has them already (they are also what the reference hash covers).

    ``verify_keys`` maps key ids (``ed25519:abc``) to the keys of
    ``server_name`` that the caller trusts for this event (i.e. known and, from
    v5, valid at its ``origin_server_ts``). Signatures by other keys are
    skipped; at least one signature by a given key must exist, and every one
    that is checked must verify (appendix "Checking for a signature").
    """
    sigs = pdu.get("signatures")
    server_sigs = sigs.get(server_name) if isinstance(sigs, dict) else None
    if not isinstance(server_sigs, dict) or not server_sigs:
        raise SignatureVerifyError(f"event is not signed by {server_name}")
    checkable = [
        (kid, sig)
        for kid, sig in server_sigs.items()
        if isinstance(kid, str) and kid.startswith(SUPPORTED_ALGORITHM + ":") and kid in verify_keys
    ]
    if not checkable:
        raise SignatureVerifyError(
            f"no known {SUPPORTED_ALGORITHM} key for the signatures of {server_name} "
            f"(signed with {sorted(server_sigs)})"
        )
    message = signing_bytes if signing_bytes is not None else redacted_signing_bytes(room_version, pdu)
    for kid, sig in checkable:
        if not isinstance(sig, str):
            raise SignatureVerifyError(f"signature {server_name}/{kid} is not a string")
        try:
            sig_bytes = decode_base64(sig)
            verify_keys[kid].verify(message, sig_bytes)
        except (binascii.Error, ValueError, nacl.exceptions.CryptoError) as e:
            raise SignatureVerifyError(f"invalid signature {server_name}/{kid}: {e}") from None


def is_third_party_invite(event: Event) -> bool:
    """An invite carrying ``third_party_invite``, which the invitee's server may have signed."""
    return (
        event.type == "m.room.member"
        and event.membership == "invite"
        and isinstance(event.content.get("third_party_invite"), dict)
    )


def servers_required_to_sign(room_version: RoomVersion, event: Event) -> set[str]:
    """The servers whose valid signature an event must carry.

    * the ``sender``'s server, except on third-party invites (the invite may be
      built by the invitee's server; its ``signed`` block is checked by the
      authorisation rules against the identity server's keys instead);
    * v1/v2 rooms: the server in the ``event_id`` as well;
    * v8+ (restricted joins): for a membership event whose content names
      ``join_authorised_via_users_server``, that user's server (auth rule
      "validly signed by the homeserver of the user ID denoted by the key").

    Malformed ids are returned as-is so the signature check fails on them.
    """
    required: set[str] = set()
    if not is_third_party_invite(event):
        required.add(_domain_or_self(event.sender))
    if room_version.event_format == EventFormat.V1:
        required.add(_domain_or_self(event.event_id))
    if room_version.restricted_join_rule and event.type == "m.room.member":
        authoriser = event.content.get("join_authorised_via_users_server")
        if authoriser is not None:
            required.add(_domain_or_self(authoriser) if isinstance(authoriser, str) else repr(authoriser))
    return required


def _domain_or_self(s: str) -> str:
    try:
        return get_domain_from_id(s)
    except IdentifierError:
        return s


def check_event_hashes_and_signatures(
    room_version: RoomVersion,
    pdu: Mapping[str, Any],
    verify_keys_by_server: Mapping[str, Mapping[str, VerifyKey]],
) -> JsonDict:
    """Apply the receipt checks 2 and 3 of the server-server API to ``pdu``.

    ``pdu`` must already have passed ``matrixd.events.validation.validate_pdu``
    (receipt check 1). Returns the PDU to process further: ``pdu`` itself (as a dict) if the content
    hash matches, else its redacted form. Raises SignatureVerifyError if a
    required signature is missing or invalid; the event must then be dropped.

    ``verify_keys_by_server`` holds the keys the caller trusts per server. On a
    third-party invite, where no server is required by name, at least one
    signature by a server given here must verify and all such must verify.
    """
    event = Event(dict(pdu), room_version)
    required = servers_required_to_sign(room_version, event)
    for server in sorted(required):
        verify_event_signature(room_version, pdu, server, verify_keys_by_server.get(server, {}))
    if not required:
        sigs = pdu.get("signatures")
        signers = [s for s in (sigs if isinstance(sigs, dict) else {}) if s in verify_keys_by_server]
        if not signers:
            raise SignatureVerifyError("event carries no signature from a server with known keys")
        for server in sorted(signers):
            verify_event_signature(room_version, pdu, server, verify_keys_by_server[server])
    if check_content_hash(pdu):
        return dict(pdu)
    return prune_event_dict(room_version, pdu)
