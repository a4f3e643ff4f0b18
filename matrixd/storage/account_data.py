"""Account data (global and per room), numbered by the account_data stream.

Both tables share one :class:`StreamIdGenerator`; a write replaces the row
under a fresh id, so "what changed for this user after position p" is a range
query on ``(user_id, stream_id)``.
"""

from __future__ import annotations

import json
from typing import Any, Collection, Optional

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, in_list_clause
from matrixd.storage.streams import StreamIdGenerator
from matrixd.types import JsonDict
from matrixd.util.clock import Clock


@attrs.frozen(slots=True)
class AccountDataRow:
    """One change on the account_data stream (``room_id`` None: global)."""

    stream_id: int
    user_id: str
    room_id: Optional[str]
    data_type: str


@attrs.define
class UserAccountData:
    """A user's account data: ``global_data[type]`` and ``rooms[room_id][type]`` -> content."""

    global_data: dict[str, JsonDict] = attrs.field(factory=dict)
    rooms: dict[str, dict[str, JsonDict]] = attrs.field(factory=dict)

    def is_empty(self) -> bool:
        return not self.global_data and not self.rooms


def _dumps(content: JsonDict) -> str:
    return json.dumps(content, separators=(",", ":"), ensure_ascii=False)


class AccountDataStore:
    """Reads and writes account data; the master is its only writer."""

    def __init__(self, db: Database, clock: Clock, stream_ids: StreamIdGenerator) -> None:
        self._db = db
        self._clock = clock
        self._ids = stream_ids

    @staticmethod
    async def create_stream_ids(db: Database) -> StreamIdGenerator:
        return await StreamIdGenerator.create(
            db, "account_data", "stream_id", extra_tables=[("room_account_data", "stream_id")]
        )

    @property
    def stream_ids(self) -> StreamIdGenerator:
        """The stream's id generator (replication reports its last allocated id to a worker that wrote)."""
        return self._ids

    def get_current_token(self) -> int:
        return self._ids.get_current_token()

    # -- writes -----------------------------------------------------------------

    async def set_global(self, user_id: str, data_type: str, content: JsonDict) -> int:
        """Replace a global account data entry; returns its stream id."""

        def _txn(txn: Cursor, stream_id: int) -> None:
            txn.execute(
                "INSERT INTO account_data (user_id, account_data_type, stream_id, content) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id, account_data_type) DO UPDATE SET"
                " stream_id = EXCLUDED.stream_id, content = EXCLUDED.content",
                (user_id, data_type, stream_id, _dumps(content)),
            )

        with self._ids.get_next() as stream_id:
            await self._db.run_interaction("set_global_account_data", _txn, stream_id)
        return stream_id

    async def set_room(self, user_id: str, room_id: str, data_type: str, content: JsonDict) -> int:
        """Replace a room account data entry; returns its stream id."""

        def _txn(txn: Cursor, stream_id: int) -> None:
            txn.execute(
                "INSERT INTO room_account_data (user_id, room_id, account_data_type, stream_id, content)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, room_id, account_data_type) DO UPDATE SET"
                " stream_id = EXCLUDED.stream_id, content = EXCLUDED.content",
                (user_id, room_id, data_type, stream_id, _dumps(content)),
            )

        with self._ids.get_next() as stream_id:
            await self._db.run_interaction("set_room_account_data", _txn, stream_id)
        return stream_id

    # -- reads ------------------------------------------------------------------

    async def get_global(self, user_id: str, data_type: str) -> Optional[JsonDict]:
        rows = await self._db.execute(
            "get_global_account_data",
            "SELECT content FROM account_data WHERE user_id = ? AND account_data_type = ?",
            user_id,
            data_type,
        )
        return json.loads(rows[0][0]) if rows else None

    async def get_room(self, user_id: str, room_id: str, data_type: str) -> Optional[JsonDict]:
        rows = await self._db.execute(
            "get_room_account_data",
            "SELECT content FROM room_account_data WHERE user_id = ? AND room_id = ? AND account_data_type = ?",
            user_id,
            room_id,
            data_type,
        )
        return json.loads(rows[0][0]) if rows else None

    async def get_for_user(
        self,
        user_id: str,
        from_id: Optional[int] = None,
        to_id: Optional[int] = None,
        room_ids: Optional[Collection[str]] = None,
    ) -> UserAccountData:
        """A user's account data (all, or what changed in ``(from_id, to_id]``), in one transaction.

        ``room_ids``, if given, limits the room entries to those rooms.
        """

        def _txn(txn: Cursor) -> UserAccountData:
            out = UserAccountData()
            bounds = ""
            args: list[Any] = [user_id]
            if from_id is not None:
                bounds += " AND stream_id > ?"
                args.append(from_id)
            if to_id is not None:
                bounds += " AND stream_id <= ?"
                args.append(to_id)
            txn.execute(f"SELECT account_data_type, content FROM account_data WHERE user_id = ?{bounds}", args)
            out.global_data = {t: json.loads(c) for t, c in txn}
            room_sql = f"SELECT room_id, account_data_type, content FROM room_account_data WHERE user_id = ?{bounds}"
            if room_ids is None:
                txn.execute(room_sql, args)
                rows = txn.fetchall()
            else:
                rows = []
                for chunk in batch_iter(list(room_ids), IN_LIST_BATCH):
                    clause, in_args = in_list_clause(txn.engine, "room_id", chunk)
                    txn.execute(f"{room_sql} AND {clause}", [*args, *in_args])
                    rows.extend(txn.fetchall())
            for room_id, data_type, content in rows:
                out.rooms.setdefault(room_id, {})[data_type] = json.loads(content)
            return out

        return await self._db.run_interaction("get_account_data_for_user", _txn)

    async def get_updates(self, from_id: int, to_id: int, limit: int) -> list[AccountDataRow]:
        """Changes with ``from_id < stream_id <= to_id`` across both tables, oldest first (replication)."""

        def _txn(txn: Cursor) -> list[AccountDataRow]:
            txn.execute(
                "SELECT stream_id, user_id, account_data_type FROM account_data"
                " WHERE stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?",
                (from_id, to_id, limit),
            )
            rows = [AccountDataRow(int(r[0]), r[1], None, r[2]) for r in txn]
            txn.execute(
                "SELECT stream_id, user_id, room_id, account_data_type FROM room_account_data"
                " WHERE stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?",
                (from_id, to_id, limit),
            )
            rows.extend(AccountDataRow(int(r[0]), r[1], r[2], r[3]) for r in txn)
            rows.sort(key=lambda r: r.stream_id)
            return rows[:limit]

        return await self._db.run_interaction("get_account_data_updates", _txn)
