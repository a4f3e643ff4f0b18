"""Checking ed25519 signatures on the signed JSON objects of end-to-end encryption
(device keys, cross-signing keys), and the small shape checks shared by the e2e handlers.
"""

from __future__ import annotations

from typing import Any, Optional

import signedjson.key
import signedjson.sign
from unpaddedbase64 import decode_base64

from matrixd.api.errors import Codes, MatrixError
from matrixd.types import JsonDict

ED25519 = "ed25519"


def bad_json(msg: str) -> MatrixError:
    return MatrixError(400, msg, Codes.BAD_JSON)


def invalid_param(msg: str) -> MatrixError:
    return MatrixError(400, msg, Codes.INVALID_PARAM)


def invalid_signature(msg: str) -> MatrixError:
    return MatrixError(400, msg, Codes.INVALID_SIGNATURE)


def decode_ed25519_key(public_key: object) -> Optional[bytes]:
    """The 32 key bytes of an unpadded-base64 ed25519 public key, None if it is not one."""
    if not isinstance(public_key, str) or not public_key:
        return None
    try:
        raw = decode_base64(public_key)
    except Exception:
        return None
    return raw if len(raw) == 32 else None


def has_valid_signature(obj: JsonDict, user_id: str, key_name: str, public_key: str) -> bool:
    """True if ``obj.signatures[user_id]["ed25519:" + key_name]`` is a valid signature of ``obj``
    (without ``signatures`` and ``unsigned``) by ``public_key``."""
    raw = decode_ed25519_key(public_key)
    if raw is None:
        return False
    sigs = obj.get("signatures")
    if not isinstance(sigs, dict) or not isinstance(sigs.get(user_id), dict):
        return False
    if not isinstance(sigs[user_id].get(f"{ED25519}:{key_name}"), str):
        return False
    verify_key = signedjson.key.decode_verify_key_bytes(f"{ED25519}:{key_name}", raw)
    try:
        signedjson.sign.verify_signed_json(obj, user_id, verify_key)
    except Exception:
        # SignatureVerifyException, or a malformed (non-base64, wrong length) signature.
        return False
    return True


def signatures_of(obj: JsonDict) -> dict[str, dict[str, str]]:
    """The well-formed part of ``obj["signatures"]``: ``{user_id: {key_id: signature}}``."""
    out: dict[str, dict[str, str]] = {}
    sigs = obj.get("signatures")
    if not isinstance(sigs, dict):
        return out
    for user_id, by_key in sigs.items():
        if isinstance(by_key, dict):
            good = {k: v for k, v in by_key.items() if isinstance(k, str) and isinstance(v, str)}
            if good:
                out[user_id] = good
    return out


def without_signatures(obj: JsonDict) -> JsonDict:
    """``obj`` as it is signed: no ``signatures`` and no ``unsigned``."""
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def require_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise bad_json(f"{what} must be a string")
    return value


def require_dict(value: Any, what: str) -> JsonDict:
    if not isinstance(value, dict):
        raise bad_json(f"{what} must be an object")
    return value
