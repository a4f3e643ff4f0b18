"""Device keys, one-time keys and fallback keys: ``/keys/upload``, ``/keys/query``,
``/keys/claim`` and ``/keys/changes``.

Local users are answered from the database; users of other servers are asked
through :class:`matrixd.handlers.e2e.remote.RemoteE2EKeys`, one request per
server, and a server that cannot be asked is listed under ``failures``.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.e2e.device_lists import DeviceListChanges, DeviceListUpdater
from matrixd.handlers.e2e.remote import RemoteE2EKeys, RemoteServerUnreachable, failure_entry
from matrixd.handlers.e2e.signing import (
    ED25519,
    bad_json,
    has_valid_signature,
    invalid_param,
    invalid_signature,
    require_dict,
)
from matrixd.storage.e2e_keys import E2EKeyStore, NewKey, SignatureRow, canonical
from matrixd.streams.token import StreamToken
from matrixd.types import IdentifierError, JsonDict, Requester, get_domain_from_id

logger = logging.getLogger(__name__)

SIGNED_CURVE25519 = "signed_curve25519"
MAX_KEY_ID_LENGTH = 255
DEFAULT_REMOTE_TIMEOUT_MS = 10_000


def _check_user_id(user_id: object, where: str) -> str:
    if not isinstance(user_id, str) or not user_id.startswith("@"):
        raise invalid_param(f"{where}: {user_id!r} is not a user id")
    try:
        get_domain_from_id(user_id)
    except IdentifierError:
        raise invalid_param(f"{where}: {user_id!r} is not a user id") from None
    return user_id


def _split_key_id(full_id: object, where: str) -> tuple[str, str]:
    """``<algorithm>:<key_id>`` -> (algorithm, key_id)."""
    if not isinstance(full_id, str) or len(full_id) > MAX_KEY_ID_LENGTH:
        raise invalid_param(f"{where}: bad key id {full_id!r}")
    algorithm, sep, key_id = full_id.partition(":")
    if not sep or not algorithm or not key_id:
        raise invalid_param(f"{where}: key id {full_id!r} is not <algorithm>:<key_id>")
    return algorithm, key_id


def _parse_key_map(value: Any, where: str) -> list[NewKey]:
    """A ``{"<alg>:<id>": key}`` map (one-time or fallback keys); a key is a string or an object."""
    keys = require_dict(value, where)
    out = []
    for full_id, key in sorted(keys.items()):
        algorithm, key_id = _split_key_id(full_id, where)
        if isinstance(key, dict):
            if not isinstance(key.get("key"), str):
                raise bad_json(f"{where}.{full_id}.key must be a string")
        elif not isinstance(key, str):
            raise bad_json(f"{where}.{full_id} must be a string or an object")
        out.append(NewKey(algorithm, key_id, canonical(key)))
    return out


def _merge_signature(obj: JsonDict, row: SignatureRow) -> None:
    sigs = obj.setdefault("signatures", {})
    if isinstance(sigs, dict):
        sigs.setdefault(row.signer_user_id, {})[row.signer_key_id] = row.signature


class E2EKeysHandler:
    def __init__(self, *, server_name: str, store: E2EKeyStore, device_lists: DeviceListUpdater,
                 changes: DeviceListChanges, remote: RemoteE2EKeys) -> None:
        self._server_name = server_name
        self._store = store
        self._device_lists = device_lists
        self._changes = changes
        self._remote = remote

    def is_mine(self, user_id: str) -> bool:
        try:
            return get_domain_from_id(user_id) == self._server_name
        except IdentifierError:
            return False

    # -- /keys/upload -------------------------------------------------------------

    async def upload_keys(self, requester: Requester, body: JsonDict) -> dict[str, int]:
        """Store the requester device's identity, one-time and fallback keys; returns OTK counts.

        Everything is validated before anything is stored, so a refused upload changes nothing.
        """
        user_id, device_id = requester.user_id, requester.device_id
        if device_id is None:
            raise MatrixError(400, "This access token is not bound to a device", Codes.INVALID_PARAM)
        device_keys = body.get("device_keys")
        if device_keys is not None:
            device_keys = await self._check_device_keys(user_id, device_id, require_dict(device_keys, "device_keys"))
        otks = _parse_key_map(body["one_time_keys"], "one_time_keys") if body.get("one_time_keys") is not None else []
        fallback = (_parse_key_map(body["fallback_keys"], "fallback_keys")
                    if body.get("fallback_keys") is not None else [])
        algorithms = [k.algorithm for k in fallback]
        if len(set(algorithms)) != len(algorithms):
            raise invalid_param("fallback_keys: at most one key per algorithm")

        if otks:
            # First: the only write that can still be refused (and then stores nothing).
            conflicts = await self._store.add_one_time_keys(user_id, device_id, otks)
            if conflicts:
                raise invalid_param(f"One-time key {conflicts[0]} already exists with different content")
        if device_keys is not None:
            keys = device_keys
            await self._device_lists.write_change(
                user_id, lambda sid: self._store.set_device_keys(user_id, device_id, keys, sid)
            )
        if fallback:
            await self._store.set_fallback_keys(user_id, device_id, fallback)
        return await self.get_one_time_key_counts(user_id, device_id)

    async def get_one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        counts = await self._store.count_one_time_keys(user_id, device_id)
        counts.setdefault(SIGNED_CURVE25519, 0)
        return counts

    async def _check_device_keys(self, user_id: str, device_id: str, keys: JsonDict) -> Optional[JsonDict]:
        """The keys to store, None if identical to the stored ones; raises if they may not be stored."""
        if keys.get("user_id") != user_id or keys.get("device_id") != device_id:
            raise invalid_param("device_keys.user_id and device_id must be those of the access token")
        algorithms = keys.get("algorithms")
        if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
            raise bad_json("device_keys.algorithms must be a list of strings")
        key_map = keys.get("keys")
        if not isinstance(key_map, dict) or not all(isinstance(v, str) for v in key_map.values()):
            raise bad_json("device_keys.keys must be an object of strings")
        ed_key = key_map.get(f"{ED25519}:{device_id}")
        if not isinstance(ed_key, str):
            raise invalid_param(f"device_keys.keys must hold the device's ed25519:{device_id} key")
        if not isinstance(keys.get("signatures"), dict):
            raise bad_json("device_keys.signatures must be an object")
        if not has_valid_signature(keys, user_id, device_id, ed_key):
            raise invalid_signature("device_keys must be signed by the device's own ed25519 key")
        to_store = {k: v for k, v in keys.items() if k != "unsigned"}
        existing = await self._store.get_device_keys(user_id, device_id)
        if existing is not None:
            if existing.get("keys") != key_map:
                raise invalid_param(
                    "This device already has different identity keys; they cannot change (log in as a new device)"
                )
            if canonical(existing) == canonical(to_store):
                return None
        return to_store

    # -- /keys/query ----------------------------------------------------------------

    async def query_keys(self, requester: Requester, body: JsonDict) -> JsonDict:
        query_raw = require_dict(body.get("device_keys"), "device_keys")
        timeout_ms = _timeout(body)
        query: dict[str, list[str]] = {}
        for user_id, device_ids in query_raw.items():
            _check_user_id(user_id, "device_keys")
            if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
                raise bad_json(f"device_keys.{user_id} must be a list of device ids")
            query[user_id] = device_ids
        local = {u: d for u, d in query.items() if self.is_mine(u)}
        result: JsonDict = {"device_keys": {}, "failures": {}, "master_keys": {}, "self_signing_keys": {},
                            "user_signing_keys": {}}
        await self._query_local(requester.user_id, local, result)
        by_server: dict[str, dict[str, list[str]]] = {}
        for user_id, device_ids in query.items():
            if user_id not in local:
                by_server.setdefault(get_domain_from_id(user_id), {})[user_id] = device_ids
        for destination, remote_query in sorted(by_server.items()):
            await self._query_remote(destination, remote_query, timeout_ms, result)
        if by_server:
            await self._add_own_signatures_of_remote_keys(requester.user_id, result)
        return result

    async def _add_own_signatures_of_remote_keys(self, viewer: str, result: JsonDict) -> None:
        """The viewer's user-signing signatures of remote users' master keys: kept only here
        (only the signer may see them), so the remote server's answer lacks them."""
        remote_masters = {u: k for u, k in result["master_keys"].items() if not self.is_mine(u)}
        if not remote_masters:
            return
        for row in await self._store.get_signatures(remote_masters, viewer):
            if row.signer_user_id != viewer:
                continue
            master = remote_masters.get(row.target_user_id)
            keys = master.get("keys") if isinstance(master, dict) else None
            if not isinstance(keys, dict) or row.target_key_id not in keys.values():
                continue
            assert isinstance(master, dict)
            signatures = master.get("signatures")
            # A copy: the remote answer may be the device cache's own object.
            master = dict(master, signatures={k: dict(v) for k, v in signatures.items() if isinstance(v, dict)}
                          if isinstance(signatures, dict) else {})
            _merge_signature(master, row)
            remote_masters[row.target_user_id] = master
            result["master_keys"][row.target_user_id] = master

    async def _query_local(self, viewer: str, query: Mapping[str, list[str]], result: JsonDict) -> None:
        if not query:
            return
        devices = await self._store.get_devices_with_keys(query)
        cross = await self._store.get_cross_signing_keys(query)
        signatures = await self._store.get_signatures(query, viewer)
        by_target: dict[tuple[str, str], list[SignatureRow]] = {}
        for row in signatures:
            by_target.setdefault((row.target_user_id, row.target_key_id), []).append(row)
        for user_id in query:
            result["device_keys"][user_id] = {}
        for dev in devices:
            if dev.keys is None:
                continue
            keys = dict(dev.keys)
            for row in by_target.get((dev.user_id, dev.device_id), []):
                _merge_signature(keys, row)
            keys["unsigned"] = {"device_display_name": dev.display_name} if dev.display_name is not None else {}
            result["device_keys"][dev.user_id][dev.device_id] = keys
        for user_id, by_type in cross.items():
            for keytype, field in (("master", "master_keys"), ("self_signing", "self_signing_keys"),
                                   ("user_signing", "user_signing_keys")):
                key = by_type.get(keytype)
                if key is None or (keytype == "user_signing" and user_id != viewer):
                    continue
                key = dict(key)
                for public in key.get("keys", {}).values():
                    for row in by_target.get((user_id, public), []):
                        _merge_signature(key, row)
                result[field][user_id] = key

    async def _query_remote(self, destination: str, query: Mapping[str, list[str]], timeout_ms: int,
                            result: JsonDict) -> None:
        try:
            answer = await self._remote.query_keys(destination, query, timeout_ms)
        except RemoteServerUnreachable as e:
            result["failures"][destination] = failure_entry(e)
            return
        for field in ("device_keys", "master_keys", "self_signing_keys"):
            part = answer.get(field)
            if not isinstance(part, dict):
                continue
            for user_id, value in part.items():
                # A server may only answer for its own users.
                if user_id in query and isinstance(value, dict):
                    result[field][user_id] = value

    # -- /keys/claim ---------------------------------------------------------------------

    async def claim_keys(self, requester: Requester, body: JsonDict) -> JsonDict:
        wanted = require_dict(body.get("one_time_keys"), "one_time_keys")
        timeout_ms = _timeout(body)
        local_claims: list[tuple[str, str, str]] = []
        remote: dict[str, dict[str, dict[str, str]]] = {}
        for user_id, devices in wanted.items():
            _check_user_id(user_id, "one_time_keys")
            devices = require_dict(devices, f"one_time_keys.{user_id}")
            for device_id, algorithm in devices.items():
                if not isinstance(algorithm, str):
                    raise bad_json(f"one_time_keys.{user_id}.{device_id} must be an algorithm name")
                if self.is_mine(user_id):
                    local_claims.append((user_id, device_id, algorithm))
                else:
                    remote.setdefault(get_domain_from_id(user_id), {}).setdefault(user_id, {})[device_id] = algorithm
        result: JsonDict = {"one_time_keys": {}, "failures": {}}
        if local_claims:
            claimed = await self._store.claim_keys(local_claims)
            for (user_id, device_id, _alg), (key_id, key) in claimed.items():
                result["one_time_keys"].setdefault(user_id, {}).setdefault(device_id, {})[key_id] = key
        for destination, claims in sorted(remote.items()):
            try:
                answer = await self._remote.claim_keys(destination, claims, timeout_ms)
            except RemoteServerUnreachable as e:
                result["failures"][destination] = failure_entry(e)
                continue
            keys = answer.get("one_time_keys")
            if isinstance(keys, dict):
                for user_id, value in keys.items():
                    if user_id in claims and isinstance(value, dict):
                        result["one_time_keys"][user_id] = value
        return result

    # -- /keys/changes ----------------------------------------------------------------------

    async def get_key_changes(self, requester: Requester, from_token: StreamToken,
                              to_token: StreamToken) -> JsonDict:
        changed, left = await self._changes.get_changes(requester.user_id, from_token, to_token)
        return {"changed": sorted(changed), "left": sorted(left)}


def _timeout(body: JsonDict) -> int:
    timeout = body.get("timeout", DEFAULT_REMOTE_TIMEOUT_MS)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
        raise bad_json("timeout must be a non-negative integer")
    return min(timeout, 60_000)
