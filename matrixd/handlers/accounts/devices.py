"""Devices of local users: listing, renaming, deleting (with their tokens), and
recording when and from where each was last used."""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Awaitable, Callable, Optional

from twisted.internet import defer

from matrixd.api.errors import Codes, MatrixError, NotFoundError
from matrixd.storage.accounts import DeviceInfo, DeviceStore
from matrixd.types import JsonDict
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

MAX_DEVICE_DISPLAY_NAME_LEN = 100
MAX_DEVICE_ID_LEN = 255

#: ``(user_id, device_ids)`` after devices were deleted: e2e keys, to-device inboxes, pushers...
DeviceDeletionCallback = Callable[[str, list[str]], Awaitable[None]]


def device_to_json(device: DeviceInfo) -> JsonDict:
    out: JsonDict = {"device_id": device.device_id}
    if device.display_name is not None:
        out["display_name"] = device.display_name
    if device.last_seen_ip is not None:
        out["last_seen_ip"] = device.last_seen_ip
    if device.last_seen_ts is not None:
        out["last_seen_ts"] = device.last_seen_ts
    return out


def check_device_id(device_id: object) -> str:
    """A client-chosen device id: a non-empty printable string without spaces, at most 255 characters."""
    if not isinstance(device_id, str):
        raise MatrixError(400, "device_id must be a string", Codes.BAD_JSON)
    if not device_id or len(device_id) > MAX_DEVICE_ID_LEN or not device_id.isprintable() or " " in device_id:
        raise MatrixError(400, "device_id must be 1-255 printable characters without spaces", Codes.INVALID_PARAM)
    return device_id


class DeviceHandler:
    def __init__(self, devices: DeviceStore) -> None:
        self._devices = devices
        self._deletion_callbacks: list[DeviceDeletionCallback] = []
        self._creation_callbacks: list[DeviceDeletionCallback] = []

    def add_deletion_callback(self, cb: DeviceDeletionCallback) -> None:
        """Run ``cb`` after devices are deleted (their tokens are gone already)."""
        self._deletion_callbacks.append(cb)

    def add_creation_callback(self, cb: DeviceDeletionCallback) -> None:
        """Run ``cb(user_id, [device_id])`` after a new device is created (device list updates)."""
        self._creation_callbacks.append(cb)

    async def on_device_created(self, user_id: str, device_id: str) -> None:
        for cb in self._creation_callbacks:
            await cb(user_id, [device_id])

    async def get_devices(self, user_id: str) -> list[DeviceInfo]:
        return await self._devices.get_devices(user_id)

    async def get_device(self, user_id: str, device_id: str) -> DeviceInfo:
        device = await self._devices.get_device(user_id, device_id)
        if device is None:
            raise NotFoundError("No such device")
        return device

    async def update_display_name(self, user_id: str, device_id: str, display_name: Optional[str]) -> None:
        if display_name is not None and len(display_name) > MAX_DEVICE_DISPLAY_NAME_LEN:
            raise MatrixError(400, f"Device display name is longer than {MAX_DEVICE_DISPLAY_NAME_LEN} characters",
                              Codes.INVALID_PARAM)
        if await self._devices.get_device(user_id, device_id) is None:
            raise NotFoundError("No such device")
        await self._devices.update_display_name(user_id, device_id, display_name)

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Delete devices and every token bound to them (unknown ids are ignored)."""
        if not device_ids:
            return
        await self._devices.delete_devices(user_id, device_ids)
        for cb in self._deletion_callbacks:
            try:
                await cb(user_id, list(device_ids))
            except Exception:
                logger.exception("device deletion callback %r failed for %s", cb, user_id)

    async def delete_all_devices(self, user_id: str, except_device_id: Optional[str] = None) -> None:
        devices = await self._devices.get_devices(user_id)
        await self.delete_devices(user_id, [d.device_id for d in devices if d.device_id != except_device_id])


class DeviceActivityRecorder:
    """Records a device's last-seen time, IP and user agent from authenticated requests.

    Writes at most once per ``interval_ms`` per device, in the background: the
    request never waits for it, and a busy client costs one UPDATE per interval.
    """

    def __init__(self, clock: Clock, devices: DeviceStore, interval_ms: int = 5 * 60_000,
                 max_tracked: int = 100_000) -> None:
        self._clock = clock
        self._devices = devices
        self._interval_ms = interval_ms
        self._max_tracked = max_tracked
        self._last_write: OrderedDict[tuple[str, str], int] = OrderedDict()

    def record(self, user_id: str, device_id: str, ip: Optional[str], user_agent: Optional[str]) -> None:
        key = (user_id, device_id)
        now = self._clock.time_msec()
        last = self._last_write.get(key)
        if last is not None and now - last < self._interval_ms:
            return
        self._last_write[key] = now
        self._last_write.move_to_end(key)
        while len(self._last_write) > self._max_tracked:
            self._last_write.popitem(last=False)
        d = defer.ensureDeferred(self._devices.record_last_seen(user_id, device_id, ip, user_agent or None))
        d.addErrback(lambda f: logger.warning("failed to record last seen of %s/%s: %s", user_id, device_id,
                                              f.getErrorMessage()))

    async def forget_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Deletion callback: a device re-created with the same id is recorded afresh."""
        for device_id in device_ids:
            self._last_write.pop((user_id, device_id), None)
