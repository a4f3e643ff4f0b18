"""The rooms table: which rooms exist here, their version, and directory visibility."""

from __future__ import annotations

from typing import Optional

from matrixd.api.errors import NotFoundError
from matrixd.events.room_versions import RoomVersion, get_room_version
from matrixd.storage.cache import LruCache
from matrixd.storage.database import Cursor, Database
from matrixd.storage.models import RoomInfo
from matrixd.util.clock import Clock


class RoomStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        # A room's version never changes, so this cache needs no invalidation.
        self._versions: LruCache[str, RoomVersion] = LruCache("room_versions", 10_000)

    async def store_room(self, room_id: str, room_version: str, creator: Optional[str], is_public: bool) -> bool:
        """Record a room; False (and no change) if it is already known."""

        def _txn(txn: Cursor) -> bool:
            txn.execute(
                "INSERT INTO rooms (room_id, room_version, creator, is_public) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (room_id) DO NOTHING",
                (room_id, room_version, creator, is_public),
            )
            return txn.rowcount == 1

        return await self._db.run_interaction("store_room", _txn)

    async def get_room(self, room_id: str) -> Optional[RoomInfo]:
        row = await self._db.simple_select_one(
            "rooms", {"room_id": room_id}, ["room_version", "creator", "is_public"], allow_none=True, desc="get_room"
        )
        if row is None:
            return None
        return RoomInfo(room_id, row["room_version"], row["creator"], bool(row["is_public"]))

    async def get_room_version(self, room_id: str) -> RoomVersion:
        """The room's version; NotFoundError for unknown rooms, M_UNSUPPORTED_ROOM_VERSION for unknown versions."""
        cached = self._versions.get(room_id)
        if cached is not None:
            return cached
        version_id = await self._db.simple_select_one_onecol(
            "rooms", {"room_id": room_id}, "room_version", allow_none=True, desc="get_room_version"
        )
        if version_id is None:
            raise NotFoundError(f"Unknown room {room_id}")
        version = get_room_version(version_id)
        self._versions.set(room_id, version)
        return version

    async def set_room_is_public(self, room_id: str, is_public: bool) -> None:
        changed = await self._db.simple_update(
            "rooms", {"room_id": room_id}, {"is_public": is_public}, desc="set_room_is_public"
        )
        if not changed:
            raise NotFoundError(f"Unknown room {room_id}")

    async def get_public_room_ids(self) -> list[str]:
        """Rooms published in the directory, sorted."""
        rows = await self._db.execute(
            "get_public_room_ids", "SELECT room_id FROM rooms WHERE is_public ORDER BY room_id"
        )
        return [r[0] for r in rows]
