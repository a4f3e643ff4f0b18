"""Unread notification counts for ``/sync`` and push badges, from the push actions table."""

from __future__ import annotations

from typing import Sequence

from matrixd.storage.event_push_actions import EventPushActionsStore


class UnreadCounter:
    """Implements ``matrixd.handlers.sync.types.UnreadCountSource``."""

    def __init__(self, store: EventPushActionsStore) -> None:
        self._store = store

    async def get_unread_counts(
        self, user_id: str, room_ids: Sequence[str], upto: int
    ) -> dict[str, dict[str, tuple[int, int]]]:
        rows = await self._store.get_unread_counts(user_id, room_ids, upto)
        return {
            room_id: {t: (c.notifications, c.highlights) for t, c in threads.items()}
            for room_id, threads in rows.items()
        }

    async def get_badge_count(self, user_id: str) -> int:
        return await self._store.get_badge_count(user_id)
