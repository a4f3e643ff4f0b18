"""Presence: each user's latest state, numbered by the presence stream."""

from __future__ import annotations

from typing import Any, Collection, Optional, Sequence

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, in_list_clause
from matrixd.storage.streams import StreamIdGenerator
from matrixd.util.clock import Clock

_COLUMNS = "user_id, state, status_msg, last_active_ts, last_user_sync_ts, currently_active, stream_id"


@attrs.frozen(slots=True)
class UserPresenceState:
    """A user's presence as the server tracks it (``stream_id`` 0: never stored)."""

    user_id: str
    state: str
    status_msg: Optional[str] = None
    last_active_ts: int = 0
    last_user_sync_ts: int = 0
    currently_active: bool = False
    stream_id: int = 0

    @classmethod
    def default(cls, user_id: str) -> "UserPresenceState":
        return cls(user_id, "offline")


def _row(r: tuple[Any, ...]) -> UserPresenceState:
    return UserPresenceState(r[0], r[1], r[2], int(r[3]), int(r[4]), bool(r[5]), int(r[6]))


class PresenceStore:
    """Reads and writes ``presence``; the master is its only writer."""

    def __init__(self, db: Database, clock: Clock, stream_ids: StreamIdGenerator) -> None:
        self._db = db
        self._clock = clock
        self._ids = stream_ids

    @staticmethod
    async def create_stream_ids(db: Database) -> StreamIdGenerator:
        return await StreamIdGenerator.create(db, "presence", "stream_id")

    @property
    def stream_ids(self) -> StreamIdGenerator:
        """The stream's id generator (replication reports its last allocated id to a worker that wrote)."""
        return self._ids

    def get_current_token(self) -> int:
        return self._ids.get_current_token()

    async def update_presence(self, states: Sequence[UserPresenceState]) -> list[UserPresenceState]:
        """Store new states (one transaction); returns them with their stream ids."""
        if not states:
            return []

        def _txn(txn: Cursor, ids: list[int]) -> None:
            txn.execute_batch(
                f"INSERT INTO presence ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET state = EXCLUDED.state, status_msg = EXCLUDED.status_msg,"
                " last_active_ts = EXCLUDED.last_active_ts, last_user_sync_ts = EXCLUDED.last_user_sync_ts,"
                " currently_active = EXCLUDED.currently_active, stream_id = EXCLUDED.stream_id",
                [
                    (s.user_id, s.state, s.status_msg, s.last_active_ts, s.last_user_sync_ts, s.currently_active, i)
                    for s, i in zip(states, ids)
                ],
            )

        with self._ids.get_next_mult(len(states)) as ids:
            await self._db.run_interaction("update_presence", _txn, ids)
        return [attrs.evolve(s, stream_id=i) for s, i in zip(states, ids)]

    async def get_presence(self, user_ids: Collection[str]) -> dict[str, UserPresenceState]:
        """The stored states of those users that have one."""
        users = list(user_ids)

        def _txn(txn: Cursor) -> dict[str, UserPresenceState]:
            out: dict[str, UserPresenceState] = {}
            for chunk in batch_iter(users, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "user_id", chunk)
                txn.execute(f"SELECT {_COLUMNS} FROM presence WHERE {clause}", args)
                out.update((r[0], _row(r)) for r in txn)
            return out

        if not users:
            return {}
        return await self._db.run_interaction("get_presence", _txn)

    async def get_updates(self, from_id: int, to_id: int, limit: int) -> list[UserPresenceState]:
        """States with ``from_id < stream_id <= to_id``, oldest first (sync and replication catch-up)."""
        rows = await self._db.execute(
            "get_presence_updates",
            f"SELECT {_COLUMNS} FROM presence WHERE stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?",
            from_id,
            to_id,
            limit,
        )
        return [_row(r) for r in rows]

    async def get_active_states(self) -> list[UserPresenceState]:
        """Users not offline (the master reloads them at start-up to keep their timeouts running)."""
        rows = await self._db.execute(
            "get_active_presence", f"SELECT {_COLUMNS} FROM presence WHERE state != 'offline'"
        )
        return [_row(r) for r in rows]
