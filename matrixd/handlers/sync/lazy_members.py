"""Which membership events each device has already been sent, so lazy-loading can skip redundant ones.

A member event counts as sent only once the client has shown it received the
response that carried it, by syncing from that response's ``next_batch`` (or
later): a response lost in transit, or retried from an older token, sends the
members again.
"""

from __future__ import annotations

from typing import Mapping, Optional

from matrixd.storage.cache import LruCache

#: ``room -> member -> (event_id, events position of the response that carried it)``
_DeviceEntry = dict[str, dict[str, tuple[str, int]]]


class LazyMembersCache:
    def __init__(self, max_devices: int = 10_000) -> None:
        self._cache: LruCache[tuple[str, Optional[str]], _DeviceEntry] = LruCache("lazy_loaded_members", max_devices)

    def reset(self, user_id: str, device_id: Optional[str]) -> None:
        """An initial sync: the client starts from nothing."""
        self._cache.invalidate((user_id, device_id))

    def is_redundant(
        self, user_id: str, device_id: Optional[str], room_id: str, member: str, event_id: str, since: Optional[int]
    ) -> bool:
        if since is None:
            return False
        entry = self._cache.get((user_id, device_id))
        if entry is None:
            return False
        sent = entry.get(room_id, {}).get(member)
        return sent is not None and sent[0] == event_id and sent[1] <= since

    def record(
        self, user_id: str, device_id: Optional[str], room_id: str, members: Mapping[str, str], position: int
    ) -> None:
        if not members:
            return
        key = (user_id, device_id)
        entry = self._cache.get(key)
        if entry is None:
            entry = {}
            self._cache.set(key, entry)
        room = entry.setdefault(room_id, {})
        for member, event_id in members.items():
            old = room.get(member)
            if old is None or old[0] != event_id:
                room[member] = (event_id, position)
