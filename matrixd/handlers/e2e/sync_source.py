"""What ``/sync`` needs from end-to-end encryption, behind one small class.

Usage by the sync handler, for a request with ``since`` (a ``StreamToken``)
and the ``now`` token it answers up to::

    await e2e.ack_to_device(user, device, since.to_device)        # delivered last time
    events, pos = await e2e.get_to_device_messages(user, device, since.to_device, 100)
    changed, left = await e2e.get_device_list_changes(user, since, now)
    counts = await e2e.get_one_time_key_counts(user, device)
    unused = await e2e.get_unused_fallback_key_types(user, device)
    next_batch = now.copy_and_replace(StreamName.TO_DEVICE, pos)

Wake-up keys: to-device and device-list changes notify the Notifier with the
user ids concerned, so a sync waits on its own user id among its keys.
"""

from __future__ import annotations

from matrixd.handlers.e2e.device_lists import DeviceListChanges, DeviceListUpdater
from matrixd.handlers.e2e.keys import SIGNED_CURVE25519
from matrixd.handlers.e2e.to_device import DEFAULT_SYNC_LIMIT, ToDeviceHandler
from matrixd.storage.e2e_keys import E2EKeyStore
from matrixd.streams.token import StreamToken
from matrixd.types import JsonDict


class E2ESyncSource:
    def __init__(self, *, keys: E2EKeyStore, to_device: ToDeviceHandler, device_lists: DeviceListUpdater,
                 changes: DeviceListChanges) -> None:
        self._keys = keys
        self._to_device = to_device
        self._device_lists = device_lists
        self._changes = changes

    async def get_to_device_messages(self, user_id: str, device_id: str, since_pos: int,
                                     limit: int = DEFAULT_SYNC_LIMIT) -> tuple[list[JsonDict], int]:
        """Up to ``limit`` messages after ``since_pos`` (``{sender, type, content}``, in arrival
        order) and the to_device position to put in ``next_batch``. Nothing is deleted here."""
        return await self._to_device.get_messages(user_id, device_id, since_pos, limit)

    async def ack_to_device(self, user_id: str, device_id: str, up_to_pos: int) -> None:
        """The device came back with a token at ``up_to_pos``: delete what it has received."""
        await self._to_device.ack(user_id, device_id, up_to_pos)

    async def get_device_list_changes(self, user_id: str, from_token: StreamToken,
                                      to_token: StreamToken) -> tuple[set[str], set[str]]:
        """``(changed, left)`` between two sync tokens. Both the device_lists and the events
        positions are used: joins and leaves of shared rooms come from the events stream."""
        return await self._changes.get_changes(user_id, from_token, to_token)

    async def get_one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        counts = await self._keys.count_one_time_keys(user_id, device_id)
        counts.setdefault(SIGNED_CURVE25519, 0)
        return counts

    async def get_key_counts(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        """Both of :meth:`get_one_time_key_counts` and :meth:`get_unused_fallback_key_types`, in one read."""
        counts, unused = await self._keys.get_key_counts_for_sync(user_id, device_id)
        counts.setdefault(SIGNED_CURVE25519, 0)
        return counts, unused

    async def get_unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]:
        return await self._keys.get_unused_fallback_key_types(user_id, device_id)

    def current_to_device_position(self) -> int:
        return self._to_device.current_position()

    def current_device_list_position(self) -> int:
        return self._device_lists.current_position()
