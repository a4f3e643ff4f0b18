"""Server key responses (``/_matrix/key/v2/server``): building ours, checking others'.

A key response lists a server's current ``verify_keys``, the ``old_verify_keys``
it used to sign with (each with its ``expired_ts``), and ``valid_until_ts``,
and is signed by the server itself (server-server API, "Retrieving server
keys"). What a checked response yields is, per key id, a :class:`FetchedKey`:
the key and the time up to which it may verify signatures. For current keys
that is ``valid_until_ts`` but never more than seven days after we fetched the
response (the spec's cap, so a stolen key cannot be published "forever"); for
old keys it is their ``expired_ts``.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, cast

import attrs
import signedjson.sign
from signedjson.types import SigningKey, VerifyKey

from matrixd.crypto.keys import KeyFileError, decode_verify_key, encode_verify_key, get_verify_key, key_id
from matrixd.util.clock import Clock

JsonDict = dict[str, Any]

#: The longest a fetched key is trusted for, whatever its response says.
MAX_KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000


class KeyResponseError(ValueError):
    """A key response is malformed or not correctly signed; the message says how."""


@attrs.frozen(slots=True)
class FetchedKey:
    """A server's verify key and the time (ms) up to which it may verify signatures."""

    verify_key: VerifyKey = attrs.field(eq=False)
    valid_until_ts: int
    # For equality and logs: the key's unpadded base64.
    key_base64: str = attrs.field(default="")

    def __attrs_post_init__(self) -> None:
        if not self.key_base64:
            object.__setattr__(self, "key_base64", encode_verify_key(self.verify_key))


@attrs.frozen(slots=True)
class StoredKeyJson:
    """One stored key response, as it covers ``key_id``."""

    key_id: str
    from_server: str
    ts_added_ms: int
    ts_valid_until_ms: int
    key_json: JsonDict = attrs.field(eq=False)


def parse_key_response(response: Any, server_name: str, now_ms: int) -> dict[str, FetchedKey]:
    """Check a ``/_matrix/key/v2/server`` response from (or about) ``server_name``.

    Checks: the shape of the spec's ``ServerKeys`` object, ``server_name``
    matches, and the response carries at least one signature of ``server_name``
    by a key it lists in ``verify_keys``, every such signature verifying.

    Returns:
        ``{key_id: FetchedKey}`` for its current and old keys (current keys
        win if an id appears in both).

    Raises:
        KeyResponseError: naming what is wrong.
    """
    if not isinstance(response, dict):
        raise KeyResponseError("key response is not a JSON object")
    if response.get("server_name") != server_name:
        raise KeyResponseError(f"key response is for {response.get('server_name')!r}, not {server_name!r}")
    valid_until_ts = response.get("valid_until_ts")
    if not _is_int(valid_until_ts):
        raise KeyResponseError("key response has no integer valid_until_ts")

    current = _parse_key_map(response.get("verify_keys"), "verify_keys", required=True)
    old_raw = response.get("old_verify_keys", {})
    old = _parse_key_map(old_raw, "old_verify_keys", required=False)

    _check_self_signature(response, server_name, current)

    valid_until = min(int(cast(int, valid_until_ts)), now_ms + MAX_KEY_VALIDITY_MS)
    keys: dict[str, FetchedKey] = {}
    for kid, (verify_key, entry) in old.items():
        expired_ts = entry.get("expired_ts")
        if not _is_int(expired_ts):
            raise KeyResponseError(f"old_verify_keys.{kid} has no integer expired_ts")
        keys[kid] = FetchedKey(verify_key, int(cast(int, expired_ts)))
    for kid, (verify_key, _entry) in current.items():
        keys[kid] = FetchedKey(verify_key, valid_until)
    return keys


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_key_map(raw: Any, field: str, required: bool) -> dict[str, tuple[VerifyKey, Mapping[str, Any]]]:
    if not isinstance(raw, dict) or (required and not raw):
        raise KeyResponseError(f"key response has no {field} object" if required else f"{field} is not an object")
    out: dict[str, tuple[VerifyKey, Mapping[str, Any]]] = {}
    for kid, entry in raw.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise KeyResponseError(f"{field}.{kid} has no key string")
        if not kid.startswith("ed25519:"):
            continue  # an algorithm we do not know: nothing to verify with it
        try:
            out[kid] = (decode_verify_key(kid, entry["key"]), entry)
        except KeyFileError as e:
            raise KeyResponseError(f"{field}.{kid}: {e}") from None
    if required and not out:
        raise KeyResponseError("key response lists no ed25519 verify key")
    return out


def _check_self_signature(
    response: JsonDict, server_name: str, current: Mapping[str, tuple[VerifyKey, Mapping[str, Any]]]
) -> None:
    sigs = response.get("signatures")
    own = sigs.get(server_name) if isinstance(sigs, dict) else None
    if not isinstance(own, dict):
        raise KeyResponseError(f"key response is not signed by {server_name}")
    signed_with = [kid for kid in own if kid in current]
    if not signed_with:
        raise KeyResponseError(f"key response is not signed by any key of {server_name} it lists")
    for kid in signed_with:
        verify_json_signature(response, server_name, current[kid][0])


def verify_json_signature(obj: Mapping[str, Any], signer: str, verify_key: VerifyKey) -> None:
    """Check ``signer``'s signature by ``verify_key`` on ``obj`` (appendix "Checking for a signature").

    Raises:
        KeyResponseError: the signature is missing, not base64 or does not verify.
    """
    try:
        signedjson.sign.verify_signed_json(dict(obj), signer, verify_key)
    except signedjson.sign.SignatureVerifyException as e:
        raise KeyResponseError(f"signature of {signer} with {key_id(verify_key)} does not verify: {e}") from None


def add_json_signature(obj: Mapping[str, Any], signer: str, signing_key: SigningKey) -> JsonDict:
    """A deep copy of ``obj`` with ``signer``'s signature added (others kept)."""
    signed: JsonDict = signedjson.sign.sign_json(copy.deepcopy(dict(obj)), signer, signing_key)
    return signed


@attrs.frozen(slots=True)
class OldKey:
    verify_key: VerifyKey = attrs.field(eq=False)
    expired_ts: int


class LocalServerKeys:
    """This server's signing key, the old keys it still publishes, and its key response.

    Args:
        refresh_interval_ms: how far in the future ``valid_until_ts`` is set
            (``key_refresh_interval``); other servers refetch after it.
    """

    def __init__(
        self,
        clock: Clock,
        server_name: str,
        signing_key: SigningKey,
        old_keys: Mapping[str, OldKey],
        refresh_interval_ms: int,
    ) -> None:
        self._clock = clock
        self.server_name = server_name
        self.signing_key = signing_key
        self.key_id = key_id(signing_key)
        self.verify_key = get_verify_key(signing_key)
        self._old_keys = {kid: k for kid, k in old_keys.items() if kid != self.key_id}
        self._refresh_interval_ms = refresh_interval_ms

    def key_response(self) -> JsonDict:
        """Our ``/_matrix/key/v2/server`` body, freshly signed."""
        response: JsonDict = {
            "server_name": self.server_name,
            "verify_keys": {self.key_id: {"key": encode_verify_key(self.verify_key)}},
            "old_verify_keys": {
                kid: {"key": encode_verify_key(k.verify_key), "expired_ts": k.expired_ts}
                for kid, k in sorted(self._old_keys.items())
            },
            "valid_until_ts": self._clock.time_msec() + self._refresh_interval_ms,
        }
        return self.sign(response)

    def sign(self, obj: Mapping[str, Any]) -> JsonDict:
        """A copy of ``obj`` with our signature added."""
        return add_json_signature(obj, self.server_name, self.signing_key)

    def verify_keys(self) -> dict[str, FetchedKey]:
        """Our own keys as the keyring sees them: the current one never expires."""
        keys = {kid: FetchedKey(k.verify_key, k.expired_ts) for kid, k in self._old_keys.items()}
        keys[self.key_id] = FetchedKey(self.verify_key, 2**62)
        return keys
