"""Outbound federation queries: other servers' e2e keys, profiles and room aliases.

* :class:`FederationE2EKeys` implements ``matrixd.handlers.e2e.remote.RemoteE2EKeys``
  over ``/user/keys/query`` and ``/user/keys/claim``, answering key queries
  from the remote device cache when it is fresh (the user shares a room with
  us, so its server sends us device list EDUs, and no update is pending).
* :class:`RemoteDeviceResync` refetches one user's devices with
  ``GET /user/devices/{userId}`` (after a gap in ``prev_id``, or to fill the cache).
* :class:`FederationProfiles` (``GET /query/profile``) and
  :class:`FederationAliasResolver` (``GET /query/directory``) are the remote
  hooks of the profile handler and ``RoomAliasHandler``.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any, Mapping, Optional, Sequence

from matrixd.api.errors import Codes, MatrixError, NotFoundError
from matrixd.federation.transport.client import HttpResponseException, MatrixFederationClient, RequestSendFailed
from matrixd.federation.visibility import domain_or_none
from matrixd.handlers.e2e.remote import RemoteServerUnreachable
from matrixd.handlers.rooms.aliases import AliasTarget
from matrixd.storage.device_lists import DeviceListStore
from matrixd.storage.federation_sender import CachedRemoteDevices, RemoteDeviceCacheStore
from matrixd.types import JsonDict

logger = logging.getLogger(__name__)


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _unreachable(destination: str, e: Exception) -> RemoteServerUnreachable:
    if isinstance(e, HttpResponseException):
        return RemoteServerUnreachable(destination, f"The server answered {e.code}: {e.msg}")
    return RemoteServerUnreachable(destination, str(e))


class RemoteDeviceResync:
    def __init__(self, client: MatrixFederationClient, cache: RemoteDeviceCacheStore) -> None:
        self._client = client
        self._cache = cache

    async def resync(self, user_id: str) -> bool:
        """Refetch ``user_id``'s devices from its server into the cache; False if that failed."""
        destination = domain_or_none(user_id)
        if destination is None:
            return False
        try:
            answer = await self._client.get_json(destination, f"/_matrix/federation/v1/user/devices/{_quote(user_id)}")
        except (RequestSendFailed, HttpResponseException) as e:
            logger.info("device resync of %s failed: %s", user_id, e)
            return False
        if answer.get("user_id") != user_id or not isinstance(answer.get("devices"), list):
            logger.info("device resync of %s: malformed answer from %s", user_id, destination)
            return False
        stream_id = answer.get("stream_id")
        devices: dict[str, tuple[Optional[JsonDict], Optional[str]]] = {}
        for device in answer["devices"]:
            if not isinstance(device, dict) or not isinstance(device.get("device_id"), str):
                continue
            keys = device.get("keys")
            name = device.get("device_display_name")
            devices[device["device_id"]] = (keys if isinstance(keys, dict) else None,
                                            name if isinstance(name, str) else None)
        cross = _cross_signing_of(user_id, answer.get("master_key"), answer.get("self_signing_key"))
        await self._cache.replace_user(user_id, stream_id if isinstance(stream_id, int) else None, devices, cross)
        return True


def _cross_signing_of(user_id: str, master: Any, self_signing: Any) -> dict[str, JsonDict]:
    out: dict[str, JsonDict] = {}
    if isinstance(master, dict) and master.get("user_id") == user_id:
        out["master"] = master
    if isinstance(self_signing, dict) and self_signing.get("user_id") == user_id:
        out["self_signing"] = self_signing
    return out


class FederationE2EKeys:
    """``RemoteE2EKeys`` over federation, with the remote device cache (see the module docstring)."""

    def __init__(self, client: MatrixFederationClient, cache: RemoteDeviceCacheStore,
                 device_lists: DeviceListStore, server_name: str) -> None:
        self._client = client
        self._cache = cache
        self._device_lists = device_lists
        self._server_name = server_name

    async def _shares_room_with_us(self, user_id: str) -> bool:
        sharing = await self._device_lists.get_users_sharing_a_room(user_id)
        return any(domain_or_none(u) == self._server_name for u in sharing)

    async def query_keys(self, destination: str, device_keys: Mapping[str, Sequence[str]],
                         timeout_ms: int) -> JsonDict:
        cached = await self._cache.get_cached_users(device_keys)
        fresh = {u: c for u, c in cached.items() if not c.stale and await self._shares_room_with_us(u)}
        if len(fresh) == len(device_keys):
            return _answer_from_cache(device_keys, fresh)
        try:
            answer = await self._client.post_json(
                destination, "/_matrix/federation/v1/user/keys/query", {"device_keys": dict(device_keys)},
                timeout=timeout_ms / 1000,
            )
        except (RequestSendFailed, HttpResponseException) as e:
            raise _unreachable(destination, e) from None
        await self._remember(device_keys, answer)
        return answer

    async def _remember(self, query: Mapping[str, Sequence[str]], answer: JsonDict) -> None:
        """Cache the full device lists of users whose every device was asked for."""
        by_user = answer.get("device_keys")
        if not isinstance(by_user, dict):
            return
        masters = answer.get("master_keys") if isinstance(answer.get("master_keys"), dict) else {}
        selfs = answer.get("self_signing_keys") if isinstance(answer.get("self_signing_keys"), dict) else {}
        assert isinstance(masters, dict) and isinstance(selfs, dict)
        for user_id, device_ids in query.items():
            devices = by_user.get(user_id)
            if device_ids or not isinstance(devices, dict) or not await self._shares_room_with_us(user_id):
                continue
            entries: dict[str, tuple[Optional[JsonDict], Optional[str]]] = {}
            for device_id, keys in devices.items():
                if isinstance(keys, dict):
                    unsigned = keys.get("unsigned")
                    name = unsigned.get("device_display_name") if isinstance(unsigned, dict) else None
                    entries[device_id] = ({k: v for k, v in keys.items() if k != "unsigned"},
                                          name if isinstance(name, str) else None)
            cross = _cross_signing_of(user_id, masters.get(user_id), selfs.get(user_id))
            await self._cache.replace_user(user_id, None, entries, cross)

    async def claim_keys(self, destination: str, one_time_keys: Mapping[str, Mapping[str, str]],
                         timeout_ms: int) -> JsonDict:
        try:
            return await self._client.post_json(
                destination, "/_matrix/federation/v1/user/keys/claim",
                {"one_time_keys": {u: dict(d) for u, d in one_time_keys.items()}}, timeout=timeout_ms / 1000,
            )
        except (RequestSendFailed, HttpResponseException) as e:
            raise _unreachable(destination, e) from None


def _answer_from_cache(query: Mapping[str, Sequence[str]], cached: Mapping[str, CachedRemoteDevices]) -> JsonDict:
    result: JsonDict = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
    for user_id, device_ids in query.items():
        entry = cached[user_id]
        wanted = set(device_ids) if device_ids else None
        out: JsonDict = {}
        for device_id, (keys, name) in entry.devices.items():
            if keys is None or (wanted is not None and device_id not in wanted):
                continue
            shown = dict(keys)
            shown["unsigned"] = {"device_display_name": name} if name is not None else {}
            out[device_id] = shown
        result["device_keys"][user_id] = out
        if "master" in entry.cross_signing:
            result["master_keys"][user_id] = entry.cross_signing["master"]
        if "self_signing" in entry.cross_signing:
            result["self_signing_keys"][user_id] = entry.cross_signing["self_signing"]
    return result


class FederationProfiles:
    """Profiles of users on other servers, asked of their server (``GET /query/profile``)."""

    def __init__(self, client: MatrixFederationClient) -> None:
        self._client = client

    async def get_remote_profile(self, user_id: str, field: Optional[str] = None) -> JsonDict:
        """The user's profile (or one field); 404 ``M_NOT_FOUND`` if the server has none, 502 if unreachable."""
        destination = domain_or_none(user_id)
        if destination is None:
            raise MatrixError(400, f"Invalid user id {user_id!r}", Codes.INVALID_PARAM)
        args = {"user_id": user_id, **({"field": field} if field is not None else {})}
        try:
            answer = await self._client.get_json(destination, "/_matrix/federation/v1/query/profile", args)
        except HttpResponseException as e:
            if e.code == 404:
                raise NotFoundError("Profile not found") from None
            raise e.to_matrix_error() from None
        except RequestSendFailed as e:
            raise MatrixError(502, f"Could not reach {destination}: {e.reason}", Codes.UNKNOWN) from None
        return {k: v for k, v in answer.items() if isinstance(k, str)}


class FederationAliasResolver:
    """``RemoteAliasResolver``: asks the alias's server (``GET /query/directory``)."""

    def __init__(self, client: MatrixFederationClient) -> None:
        self._client = client

    async def resolve_remote_alias(self, alias: str) -> Optional[AliasTarget]:
        destination = alias.split(":", 1)[1] if ":" in alias else ""
        try:
            answer = await self._client.get_json(destination, "/_matrix/federation/v1/query/directory",
                                                 {"room_alias": alias})
        except HttpResponseException as e:
            if e.code == 404:
                return None
            raise e.to_matrix_error() from None
        except RequestSendFailed as e:
            raise MatrixError(502, f"Could not reach {destination}: {e.reason}", Codes.UNKNOWN) from None
        room_id = answer.get("room_id")
        servers = answer.get("servers")
        if not isinstance(room_id, str) or not isinstance(servers, list):
            raise MatrixError(502, f"{destination} gave a malformed directory answer", Codes.UNKNOWN)
        return AliasTarget(room_id, tuple(s for s in servers if isinstance(s, str)))
