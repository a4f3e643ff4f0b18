"""Inbound ``m.device_list_update`` and ``m.signing_key_update``.

Each update is recorded on the device_lists stream (through the e2e area's
``DeviceListUpdater``, so local users sharing a room with the remote user see
them in ``/sync`` ``device_lists.changed`` and re-query).  If we cache the
user's devices, an update whose ``prev_id`` we have applied is applied to the
cache in place; an update after a gap (a ``prev_id`` above the last one we
applied) marks the cache stale and resyncs it with ``GET /user/devices``.
"""

from __future__ import annotations

import logging
from typing import Optional

from matrixd.federation.queries import RemoteDeviceResync
from matrixd.federation.visibility import domain_or_none
from matrixd.handlers.e2e.device_lists import DeviceListUpdater
from matrixd.storage.device_lists import DeviceListStore
from matrixd.storage.federation_sender import RemoteDeviceCacheStore
from matrixd.types import JsonDict

logger = logging.getLogger(__name__)


class DeviceListEduHandler:
    def __init__(self, *, cache: RemoteDeviceCacheStore, resync: RemoteDeviceResync, updater: DeviceListUpdater,
                 device_lists: DeviceListStore) -> None:
        self._cache = cache
        self._resync = resync
        self._updater = updater
        self._device_lists = device_lists

    async def on_device_list_update(self, origin: str, content: JsonDict) -> None:
        user_id, device_id = content.get("user_id"), content.get("device_id")
        stream_id, prev_id = content.get("stream_id"), content.get("prev_id", [])
        if (not isinstance(user_id, str) or not isinstance(device_id, str) or not isinstance(stream_id, int)
                or not isinstance(prev_id, list) or not all(isinstance(p, int) for p in prev_id)):
            logger.info("malformed m.device_list_update from %s", origin)
            return
        if domain_or_none(user_id) != origin:
            logger.info("m.device_list_update from %s for %s refused", origin, user_id)
            return
        cached = (await self._cache.get_cached_users([user_id])).get(user_id)
        if cached is not None:
            if _follows(cached.stream_id, cached.stale, stream_id, prev_id):
                keys = content.get("keys")
                name = content.get("device_display_name")
                await self._cache.apply_device_update(
                    user_id, device_id, stream_id, content.get("deleted") is True,
                    keys if isinstance(keys, dict) else None, name if isinstance(name, str) else None,
                )
            elif cached.stream_id is None or stream_id > cached.stream_id:
                await self._cache.mark_stale(user_id)
                await self._resync.resync(user_id)
        await self._record(user_id, device_id)

    async def on_signing_key_update(self, origin: str, content: JsonDict) -> None:
        user_id = content.get("user_id")
        if not isinstance(user_id, str) or domain_or_none(user_id) != origin:
            logger.info("m.signing_key_update from %s refused", origin)
            return
        if user_id in await self._cache.get_cached_users([user_id]):
            for field, key_type in (("master_key", "master"), ("self_signing_key", "self_signing")):
                key = content.get(field)
                if isinstance(key, dict) and key.get("user_id") == user_id:
                    await self._cache.set_cross_signing_key(user_id, key_type, key)
        await self._record(user_id, None)

    async def _record(self, user_id: str, device_id: Optional[str]) -> None:
        await self._updater.write_change(user_id, lambda sid: self._device_lists.add_changes(sid, user_id, [device_id]))


def _follows(last: Optional[int], stale: bool, stream_id: int, prev_id: list[int]) -> bool:
    """Whether an update can be applied to a cache that has applied ``last``."""
    if stale or last is None:
        return False
    if stream_id <= last and not prev_id:
        return False
    return all(p <= last for p in prev_id)
