"""Cross-signing: ``/keys/device_signing/upload`` (a user's master, self-signing and
user-signing keys) and ``/keys/signatures/upload`` (signatures of device keys and
master keys made with them).

Signatures are checked before they are stored: self-signing and user-signing
keys must be signed by the master key; a device may be signed by its user's
self-signing key, a user's master key by one of that user's devices, and
another user's master key by the signer's user-signing key.  Another user's
master key is the stored one for local users; for users on other servers it is
asked of their server (``RemoteE2EKeys``, which answers from the remote device
cache while it is fresh).  Such signatures stay here: only the signer may see them.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.e2e.device_lists import DeviceListUpdater
from matrixd.handlers.e2e.reauth import Reauthenticator
from matrixd.handlers.e2e.remote import NoFederationE2EKeys, RemoteE2EKeys, RemoteServerUnreachable
from matrixd.handlers.e2e.signing import (
    ED25519,
    bad_json,
    decode_ed25519_key,
    has_valid_signature,
    invalid_param,
    invalid_signature,
    require_dict,
    signatures_of,
    without_signatures,
)
from matrixd.storage.e2e_keys import E2EKeyStore, SignatureRow, canonical
from matrixd.types import IdentifierError, JsonDict, Requester, get_domain_from_id

MASTER, SELF_SIGNING, USER_SIGNING = "master", "self_signing", "user_signing"
_BODY_FIELDS = {"master_key": MASTER, "self_signing_key": SELF_SIGNING, "user_signing_key": USER_SIGNING}
# How long /keys/signatures/upload waits for another server's copy of a master key.
_REMOTE_TIMEOUT_MS = 10_000


def public_key_of(key: Mapping[str, Any]) -> str:
    """The public key of a validated cross-signing key."""
    return str(next(iter(key["keys"].values())))


def _check_cross_signing_key(value: Any, user_id: str, usage: str, field: str) -> JsonDict:
    key = require_dict(value, field)
    if key.get("user_id") != user_id:
        raise invalid_param(f"{field}.user_id must be your own user id")
    usages = key.get("usage")
    if not isinstance(usages, list) or usage not in usages:
        raise invalid_param(f"{field}.usage must include {usage!r}")
    keys = key.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        raise invalid_param(f"{field}.keys must hold exactly one key")
    ((key_id, public),) = keys.items()
    if key_id != f"{ED25519}:{public}" or decode_ed25519_key(public) is None:
        raise invalid_param(f"{field}.keys must be {{'ed25519:<public key>': '<public key>'}} with an ed25519 key")
    if "signatures" in key and not isinstance(key["signatures"], dict):
        raise bad_json(f"{field}.signatures must be an object")
    return key


def _failure(errcode: str, msg: str) -> JsonDict:
    return {"errcode": errcode, "error": msg}


class _SignatureFailure(Exception):
    def __init__(self, errcode: str, msg: str) -> None:
        super().__init__(msg)
        self.errcode = errcode
        self.msg = msg


class CrossSigningHandler:
    def __init__(self, *, server_name: str, store: E2EKeyStore, device_lists: DeviceListUpdater,
                 reauth: Reauthenticator, remote: Optional[RemoteE2EKeys] = None) -> None:
        self._server_name = server_name
        self._store = store
        self._device_lists = device_lists
        self._reauth = reauth
        self._remote: RemoteE2EKeys = remote or NoFederationE2EKeys()

    # -- /keys/device_signing/upload ----------------------------------------------------

    async def upload_signing_keys(self, requester: Requester, body: JsonDict) -> None:
        user_id = requester.user_id
        new: dict[str, JsonDict] = {}
        for field, keytype in _BODY_FIELDS.items():
            if body.get(field) is not None:
                new[keytype] = _check_cross_signing_key(body[field], user_id, keytype, field)
        if not new:
            return
        existing = (await self._store.get_cross_signing_keys([user_id])).get(user_id, {})
        if all(keytype in existing and canonical(existing[keytype]) == canonical(key) for keytype, key in new.items()):
            return  # a repeat of what is stored: idempotent, no authentication needed
        master = new.get(MASTER) or existing.get(MASTER)
        if master is None:
            raise MatrixError(400, "No master key is available to sign the other keys", Codes.MISSING_PARAM)
        master_public = public_key_of(master)
        for keytype in (SELF_SIGNING, USER_SIGNING):
            key = new.get(keytype)
            if key is not None and not has_valid_signature(key, user_id, master_public, master_public):
                raise invalid_signature(f"The {keytype} key must be signed by the master key")
        publics = [public_key_of(k) for k in new.values()]
        clashing = await self._store.get_devices_with_keys({user_id: publics})
        if clashing:
            raise MatrixError(403, "A cross-signing public key is the same as one of your device ids",
                              Codes.FORBIDDEN)
        if MASTER in existing:
            # Replacing keys needs the user to authenticate again; a first upload does not.
            await self._reauth.require_auth(requester, body, "/keys/device_signing/upload")
        to_store = {keytype: (public_key_of(k), k) for keytype, k in new.items()}
        await self._device_lists.write_change(
            user_id, lambda sid: self._store.set_cross_signing_keys(user_id, to_store, sid)
        )

    # -- /keys/signatures/upload ------------------------------------------------------------

    async def upload_signatures(self, requester: Requester, body: JsonDict) -> JsonDict:
        signer = requester.user_id
        failures: dict[str, dict[str, JsonDict]] = {}
        rows: list[SignatureRow] = []
        own_keys = (await self._store.get_cross_signing_keys([signer])).get(signer, {})
        for target_user, by_key in body.items():
            if not isinstance(target_user, str) or not target_user.startswith("@"):
                raise invalid_param(f"{target_user!r} is not a user id")
            by_key = require_dict(by_key, target_user)
            for key_id, signed in by_key.items():
                try:
                    if not isinstance(signed, dict):
                        raise _SignatureFailure(Codes.BAD_JSON, "The signed object must be a JSON object")
                    if target_user == signer:
                        rows.extend(await self._check_own_signatures(signer, key_id, signed, own_keys))
                    else:
                        rows.append(await self._check_user_signature(signer, target_user, key_id, signed, own_keys))
                except _SignatureFailure as e:
                    failures.setdefault(target_user, {})[key_id] = _failure(e.errcode, e.msg)
        if rows:
            rows_to_store = rows
            await self._device_lists.write_change(
                signer, lambda sid: self._store.store_signatures(rows_to_store, sid)
            )
        return {"failures": failures}

    async def _check_own_signatures(self, user_id: str, key_id: str, signed: JsonDict,
                                    own_keys: Mapping[str, JsonDict]) -> list[SignatureRow]:
        """A user signing their own device (with the self-signing key) or master key (with a device)."""
        master = own_keys.get(MASTER)
        if master is not None and key_id == public_key_of(master):
            _require_same_key(signed, master)
            devices = await self._store.get_devices_with_keys({user_id: []})
            device_keys = {d.device_id: d.keys for d in devices if d.keys is not None}
            out = []
            for sig_key_id, signature in signatures_of(signed).get(user_id, {}).items():
                alg, _, device_id = sig_key_id.partition(":")
                if alg != ED25519 or device_id == key_id:
                    continue
                dkeys = device_keys.get(device_id)
                if dkeys is None:
                    continue
                public = dkeys.get("keys", {}).get(f"{ED25519}:{device_id}")
                if not isinstance(public, str) or not has_valid_signature(signed, user_id, device_id, public):
                    raise _SignatureFailure(Codes.INVALID_SIGNATURE, f"Invalid signature by device {device_id}")
                out.append(SignatureRow(user_id, sig_key_id, user_id, key_id, signature))
            if not out:
                raise _SignatureFailure(Codes.INVALID_SIGNATURE, "No signature by one of your devices")
            return out
        devices = await self._store.get_devices_with_keys({user_id: [key_id]})
        if not devices or devices[0].keys is None:
            raise _SignatureFailure(Codes.NOT_FOUND, f"Unknown key or device {key_id}")
        _require_same_key(signed, devices[0].keys)
        ssk = own_keys.get(SELF_SIGNING)
        if ssk is None:
            raise _SignatureFailure(Codes.MISSING_PARAM, "You have no self-signing key")
        ssk_public = public_key_of(ssk)
        ssk_signature = signatures_of(signed).get(user_id, {}).get(f"{ED25519}:{ssk_public}")
        if ssk_signature is None or not has_valid_signature(signed, user_id, ssk_public, ssk_public):
            raise _SignatureFailure(Codes.INVALID_SIGNATURE, "Invalid or missing self-signing key signature")
        return [SignatureRow(user_id, f"{ED25519}:{ssk_public}", user_id, key_id, ssk_signature)]

    async def _check_user_signature(self, signer: str, target: str, key_id: str, signed: JsonDict,
                                    own_keys: Mapping[str, JsonDict]) -> SignatureRow:
        """``signer``'s user-signing key signing ``target``'s master key."""
        if self._is_mine(target):
            target_master = (await self._store.get_cross_signing_keys([target])).get(target, {}).get(MASTER)
        else:
            target_master = await self._remote_master_key(target)
        if target_master is None or key_id != public_key_of(target_master):
            raise _SignatureFailure(Codes.NOT_FOUND, f"{key_id} is not the master key of {target}")
        _require_same_key(signed, target_master)
        usk = own_keys.get(USER_SIGNING)
        if usk is None:
            raise _SignatureFailure(Codes.MISSING_PARAM, "You have no user-signing key")
        usk_public = public_key_of(usk)
        signature = signatures_of(signed).get(signer, {}).get(f"{ED25519}:{usk_public}")
        if signature is None or not has_valid_signature(signed, signer, usk_public, usk_public):
            raise _SignatureFailure(Codes.INVALID_SIGNATURE, "Invalid or missing user-signing key signature")
        return SignatureRow(signer, f"{ED25519}:{usk_public}", target, key_id, signature)

    async def _remote_master_key(self, user_id: str) -> Optional[JsonDict]:
        """The master key of a user on another server, as their server (or our fresh cache) has it."""
        try:
            destination = get_domain_from_id(user_id)
        except IdentifierError:
            raise _SignatureFailure(Codes.INVALID_PARAM, f"{user_id!r} is not a user id") from None
        try:
            answer = await self._remote.query_keys(destination, {user_id: []}, _REMOTE_TIMEOUT_MS)
        except RemoteServerUnreachable as e:
            raise _SignatureFailure(Codes.UNKNOWN, f"Could not fetch the keys of {user_id}: {e.reason}") from None
        masters = answer.get("master_keys")
        master = masters.get(user_id) if isinstance(masters, dict) else None
        if master is None:
            return None
        try:
            return _check_cross_signing_key(master, user_id, MASTER, "master_key")
        except MatrixError:
            raise _SignatureFailure(Codes.INVALID_PARAM, f"{destination} sent an invalid master key") from None

    def _is_mine(self, user_id: str) -> bool:
        try:
            return get_domain_from_id(user_id) == self._server_name
        except IdentifierError:
            return False


def _require_same_key(signed: JsonDict, stored: Optional[JsonDict]) -> None:
    if stored is None or canonical(without_signatures(signed)) != canonical(without_signatures(stored)):
        raise _SignatureFailure(Codes.INVALID_PARAM, "The signed object does not match the stored key")
