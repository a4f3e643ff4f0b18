"""The ``cache_invalidation_stream`` table: invalidations of named caches, replayed by workers.

Written by the master (one row per stream id, see
:class:`matrixd.replication.caches.CacheInvalidator`); read by the caches
replication stream for catch-up.
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.sql import simple_upsert_txn
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


    # -- pruning ---------------------------------------------------------------------

    async def get_pruned_up_to(self) -> int:
        """Rows at or below this stream id may have been deleted (0: none ever were)."""
        value = await self._db.simple_select_one_onecol("cache_invalidation_pruned", {"lock": "X"}, "up_to",
                                                        allow_none=True, desc="get_cache_invalidation_pruned")
        return 0 if value is None else int(value)

    async def prune(self, before_ts: int, max_stream_id: int) -> tuple[int, int]:
        """Delete the rows written before ``before_ts`` with ids at most ``max_stream_id``.

        Returns ``(rows deleted, pruned_up_to)``; the new bound is recorded in the
        same transaction, so a reader that sees a gap below it knows rows are gone.
        """

        def _txn(txn: Cursor) -> tuple[int, int]:
            txn.execute("SELECT up_to FROM cache_invalidation_pruned WHERE lock = 'X'")
            row = txn.fetchone()
            up_to = 0 if row is None else int(row[0])
            txn.execute(
                "SELECT MAX(stream_id) FROM cache_invalidation_stream WHERE invalidation_ts < ? AND stream_id <= ?",
                (before_ts, max_stream_id),
            )
            found = txn.fetchone()
            if found is None or found[0] is None or int(found[0]) <= up_to:
                return 0, up_to
            new_up_to = int(found[0])
            txn.execute("DELETE FROM cache_invalidation_stream WHERE stream_id <= ?", (new_up_to,))
            deleted = max(0, txn.rowcount)
            simple_upsert_txn(txn, "cache_invalidation_pruned", {"lock": "X"}, {"up_to": new_up_to})
            return deleted, new_up_to

        return await self._db.run_interaction("prune_cache_invalidations", _txn)
