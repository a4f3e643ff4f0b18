"""Rooms joined with partial state (``send_join`` with ``omit_members``) until their full state is known.

A row exists from just before the join is persisted until the background
resync has replaced the join's state with the full state; then the
events-stream position of the new current state is kept for ``/sync`` (a
room it left out shows up as newly joined).  Reads are not cached in general:
every process (the federation sender, sync workers) must see a room leave it at
once.  The master's own store, through which every mark and clear goes, keeps
the set in memory instead (:meth:`PartialStateStore.track_in_memory`), so a
woken ``/sync`` or an outgoing event costs no query for it.
"""

from __future__ import annotations

from typing import Collection, Iterable, Optional

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, in_list_clause
from matrixd.util.clock import Clock


@attrs.frozen(slots=True)
class PartialStateRoom:
    """A partial-state room: the join whose state lacks members, and who to ask for the rest."""

    room_id: str
    join_event_id: str
    joined_via: str
    servers: tuple[str, ...]


class PartialStateStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        # The partial rooms, when this store is the one every change goes through (the master's).
        self._in_memory: Optional[set[str]] = None
        self._last_resync: Optional[int] = None  # the latest resync's position (tracked in memory)

    async def track_in_memory(self) -> None:
        """Answer membership questions from memory from now on: only for the one store every mark and
        clear of this database goes through (with the resync's in-transaction clear reported by
        :meth:`forget_partial` after its commit)."""
        rows = await self._db.execute("load_partial_state_rooms", "SELECT room_id FROM partial_state_rooms")
        last = await self._db.execute("last_partial_state_resync", "SELECT MAX(stream_id) FROM partial_state_resynced")
        self._in_memory = {r[0] for r in rows}
        self._last_resync = int(last[0][0]) if last and last[0][0] is not None else None

    def forget_partial(self, room_id: str, resynced_at: Optional[int] = None) -> None:
        """``clear_partial_state_txn`` committed for ``room_id`` (call before announcing it)."""
        if self._in_memory is not None:
            self._in_memory.discard(room_id)
            if resynced_at is not None and (self._last_resync is None or resynced_at > self._last_resync):
                self._last_resync = resynced_at

    async def mark_partial(self, room_id: str, join_event_id: str, joined_via: str, servers: Iterable[str]) -> None:
        """Record ``room_id`` as partial-state (replacing an older mark of the same room)."""
        names = sorted(set(servers) | {joined_via})
        now = self._clock.time_msec()

        def _txn(txn: Cursor) -> None:
            txn.execute("DELETE FROM partial_state_room_servers WHERE room_id = ?", (room_id,))
            txn.execute("DELETE FROM partial_state_rooms WHERE room_id = ?", (room_id,))
            txn.execute(
                "INSERT INTO partial_state_rooms (room_id, join_event_id, joined_via, added_ts) VALUES (?, ?, ?, ?)",
                (room_id, join_event_id, joined_via, now),
            )
            txn.execute_batch(
                "INSERT INTO partial_state_room_servers (room_id, server_name) VALUES (?, ?)",
                [(room_id, s) for s in names],
            )

        await self._db.run_interaction("mark_partial_state", _txn)
        if self._in_memory is not None:
            self._in_memory.add(room_id)

    async def add_servers(self, room_id: str, servers: Iterable[str]) -> None:
        """Servers learnt to be in a partial-state room (senders of received events); no-op once resynced."""
        names = sorted(set(servers))
        if not names:
            return

        def _txn(txn: Cursor) -> None:
            txn.execute("SELECT 1 FROM partial_state_rooms WHERE room_id = ?", (room_id,))
            if txn.fetchone() is None:
                return
            txn.execute_batch(
                "INSERT INTO partial_state_room_servers (room_id, server_name) VALUES (?, ?)"
                " ON CONFLICT (room_id, server_name) DO NOTHING",
                [(room_id, s) for s in names],
            )

        await self._db.run_interaction("add_partial_state_servers", _txn)

    async def get(self, room_id: str) -> Optional[PartialStateRoom]:
        rooms = await self._load([room_id])
        return rooms[0] if rooms else None

    async def get_all(self) -> list[PartialStateRoom]:
        return await self._load(None)

    async def is_partial(self, room_id: str) -> bool:
        return bool(await self.partial_among([room_id]))

    async def partial_among(self, room_ids: Collection[str]) -> set[str]:
        """Those of ``room_ids`` that are partial-state."""
        if not room_ids:
            return set()
        if self._in_memory is not None:
            return self._in_memory & set(room_ids)

        def _txn(txn: Cursor) -> set[str]:
            txn.execute("SELECT room_id FROM partial_state_rooms")
            return {r[0] for r in txn}

        return await self._db.run_interaction("partial_state_among", _txn) & set(room_ids)

    async def get_servers(self, room_id: str) -> Optional[list[str]]:
        """The servers known to be in the room while it is partial-state; None once it is not."""
        if self._in_memory is not None and room_id not in self._in_memory:
            return None
        room = await self.get(room_id)
        return list(room.servers) if room is not None else None

    async def clear(self, room_id: str, resynced_at: Optional[int] = None) -> None:
        """The room's full state is known (from events-stream position ``resynced_at``, if it was resynced)."""
        await self._db.run_interaction("clear_partial_state", clear_partial_state_txn, room_id, resynced_at)
        self.forget_partial(room_id, resynced_at)

    async def resynced_after(self, room_ids: Collection[str], stream_id: int) -> set[str]:
        """Those of ``room_ids`` whose resync finished after events-stream position ``stream_id``."""
        return set(await self._resync_positions(set(room_ids), stream_id))

    async def _resync_positions(self, room_ids: set[str], after: int) -> dict[str, int]:
        """``{room: resync position}`` of those of ``room_ids`` resynced after position ``after``."""
        if self._in_memory is not None and (self._last_resync is None or self._last_resync <= after):
            return {}  # no resync since then (the usual answer, known without a query)
        if not room_ids:
            return {}
        return await self._db.run_interaction("partial_state_resynced_after", _resync_positions_txn,
                                              sorted(room_ids), after)

    async def partial_and_resynced(
        self, room_ids: Collection[str], since: Optional[int], upto: int
    ) -> tuple[set[str], set[str]]:
        """For a sync computed at events-stream position ``upto``: which of ``room_ids`` are
        partial-state, and which finished their resync in ``(since, upto]`` (none if ``since`` is
        None). A room resynced after ``upto`` still counts as partial, so that exactly one sync (the
        first whose position covers the resync) shows it resynced.
        One transaction at most (none in the process that tracks them in memory)."""
        wanted = set(room_ids)
        if not wanted:
            return set(), set()
        after = upto if since is None else min(since, upto)
        if self._in_memory is not None:
            partial = self._in_memory & wanted
            positions = await self._resync_positions(wanted - partial, after)
        else:
            def _txn(txn: Cursor) -> tuple[set[str], dict[str, int]]:
                txn.execute("SELECT room_id FROM partial_state_rooms")
                found = {r[0] for r in txn} & wanted
                return found, _resync_positions_txn(txn, sorted(wanted - found), after)

            partial, positions = await self._db.run_interaction("partial_and_resynced", _txn)
        late = {r for r, position in positions.items() if position > upto}
        resynced = set() if since is None else {r for r, position in positions.items() if since < position <= upto}
        return partial | late, resynced

    async def _load(self, room_ids: Optional[list[str]]) -> list[PartialStateRoom]:
        def _txn(txn: Cursor) -> list[PartialStateRoom]:
            rows: list[tuple[str, str, str]] = []
            if room_ids is None:
                txn.execute("SELECT room_id, join_event_id, joined_via FROM partial_state_rooms ORDER BY added_ts")
                rows = [(r[0], r[1], r[2]) for r in txn]
            else:
                for chunk in batch_iter(room_ids, IN_LIST_BATCH):
                    clause, args = in_list_clause(txn.engine, "room_id", chunk)
                    txn.execute(f"SELECT room_id, join_event_id, joined_via FROM partial_state_rooms WHERE {clause}",
                                args)
                    rows.extend((r[0], r[1], r[2]) for r in txn)
            out = []
            for room_id, join_id, via in rows:
                txn.execute("SELECT server_name FROM partial_state_room_servers WHERE room_id = ?"
                            " ORDER BY server_name", (room_id,))
                out.append(PartialStateRoom(room_id, join_id, via, tuple(r[0] for r in txn)))
            return out

        return await self._db.run_interaction("get_partial_state_rooms", _txn)


def _resync_positions_txn(txn: Cursor, room_ids: list[str], after: int) -> dict[str, int]:
    """``{room: resync position}`` of those of ``room_ids`` resynced after events-stream position ``after``."""
    found: dict[str, int] = {}
    for chunk in batch_iter(room_ids, IN_LIST_BATCH):
        clause, args = in_list_clause(txn.engine, "room_id", chunk)
        txn.execute(f"SELECT room_id, stream_id FROM partial_state_resynced WHERE {clause} AND stream_id > ?",
                    [*args, after])
        found.update((r[0], int(r[1])) for r in txn)
    return found


def clear_partial_state_txn(txn: Cursor, room_id: str, resynced_at: Optional[int]) -> None:
    """:meth:`PartialStateStore.clear` inside a caller's transaction: the resync commits it with the
    full current state, so no /sync computed at or after ``resynced_at`` still sees the room partial."""
    txn.execute("DELETE FROM partial_state_room_servers WHERE room_id = ?", (room_id,))
    txn.execute("DELETE FROM partial_state_rooms WHERE room_id = ?", (room_id,))
    if resynced_at is not None:
        txn.execute(
            "INSERT INTO partial_state_resynced (room_id, stream_id) VALUES (?, ?)"
            " ON CONFLICT (room_id) DO UPDATE SET stream_id = EXCLUDED.stream_id",
            (room_id, resynced_at),
        )
