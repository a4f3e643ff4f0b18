"""The ``cache_invalidation_stream`` table: invalidations of named caches, replayed by workers.

Written by the master (one row per stream id, see
:class:`matrixd.replication.caches.CacheInvalidator`); read by the caches
replication stream for catch-up.
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

import attrs

from matrixd.storage.database import Database
from matrixd.storage.streams import StreamIdGenerator
from matrixd.util.clock import Clock


@attrs.frozen(slots=True)
class CacheInvalidationRecord:
    """``keys`` None means the whole cache."""

    stream_id: int
    cache_name: str
    keys: Optional[tuple[str, ...]]


class CacheInvalidationStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create_id_generator(self) -> StreamIdGenerator:
        """The caches stream's id generator (the master's only)."""
        return await StreamIdGenerator.create(self._db, "cache_invalidation_stream", "stream_id")

    async def add_invalidation(self, stream_id: int, cache_name: str, keys: Optional[Sequence[str]]) -> None:
        await self._db.simple_insert(
            "cache_invalidation_stream",
            {
                "stream_id": stream_id,
                "cache_name": cache_name,
                "keys": None if keys is None else json.dumps(list(keys)),
                "invalidation_ts": self._clock.time_msec(),
            },
            desc="add_cache_invalidation",
        )

    async def get_invalidations(self, from_token: int, to_token: int, limit: int) -> list[CacheInvalidationRecord]:
        """Rows with ``from_token < stream_id <= to_token``, in order, at most ``limit``."""
        rows = await self._db.execute(
            "get_cache_invalidations",
            "SELECT stream_id, cache_name, keys FROM cache_invalidation_stream"
            " WHERE stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?",
            from_token, to_token, limit,
        )
        out = []
        for stream_id, name, keys_json in rows:
            keys = None if keys_json is None else tuple(str(k) for k in json.loads(keys_json))
            out.append(CacheInvalidationRecord(int(stream_id), name, keys))
        return out

