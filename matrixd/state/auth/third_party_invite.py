"""Verifying the ``signed`` block of a third-party invite against the room's keys.

The identity server signs ``{mxid, token, signatures}`` with the key whose public
half it gave when the invite was stored; the inviting server put that public key
(and possibly more, in ``public_keys``) in the ``m.room.third_party_invite``
event.  The auth rules allow the invite if any signature verifies with any of
those keys; which server name signed does not matter.
"""

from __future__ import annotations

from typing import Any, Mapping

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64


def public_keys_of(third_party_invite_content: Mapping[str, Any]) -> list[str]:
    """The base64 public keys of an ``m.room.third_party_invite`` event's content."""
    keys: list[str] = []
    single = third_party_invite_content.get("public_key")
    if isinstance(single, str):
        keys.append(single)
    listed = third_party_invite_content.get("public_keys")
    if isinstance(listed, list):
        for entry in listed:
            if isinstance(entry, dict):
                key = entry.get("public_key")
                if isinstance(key, str) and key not in keys:
                    keys.append(key)
    return keys


def signed_matches_public_keys(signed: dict[str, Any], public_keys: list[str]) -> bool:
    """Whether any ed25519 signature in ``signed`` verifies with any of ``public_keys``.

    Keys are unpadded base64 in the standard or URL-safe alphabet.  Malformed
    keys or signatures simply do not match.
    """
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict) or not public_keys:
        return False
    key_bytes: list[bytes] = []
    for encoded in public_keys:
        try:
            key_bytes.append(decode_base64(encoded))
        except Exception:  # not base64: this key cannot match anything
            continue
    for signer, by_key_id in signatures.items():
        if not isinstance(signer, str) or not isinstance(by_key_id, dict):
            continue
        for key_id in by_key_id:
            if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
                continue
            for raw in key_bytes:
                try:
                    verify_key = decode_verify_key_bytes(key_id, raw)
                    verify_signed_json(signed, signer, verify_key)
                except Exception:  # wrong length key, bad base64, bad signature, unencodable JSON
                    continue
                return True
    return False
