"""State groups: the room state at each event, stored as bounded chains of deltas.

Storing the full state for every event would cost O(events x state size)
rows (a million for 1,000 membership changes in a 1,000-member room).  A new
group is instead written as the difference from a previous group, usually the
state before the event, so one membership change costs one row.  To keep reads
cheap, a group ``snapshot_interval`` hops from its snapshot is written as a new
snapshot, so reading a group walks at most that many edges, and the walk
stops at the first ancestor already in the cache.

State groups are immutable once written, so the cache never needs invalidating
and any process may read them.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

from matrixd.events.event import StateKey, StateMap
from matrixd.storage.cache import LruCache
from matrixd.storage.database import Cursor, Database
from matrixd.storage.sequences import get_sequence_generator
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, in_list_clause
from matrixd.util.clock import Clock

DEFAULT_SNAPSHOT_INTERVAL = 100
#: The cache is bounded by state entries summed over cached groups.
DEFAULT_CACHE_ENTRIES = 500_000


class StateGroupStore:
    """Writes and reads state groups and the event -> state group mapping.

    Args:
        db, clock: as for every store.
        snapshot_interval: the longest delta chain; the next group is a snapshot.
        cache_entries: bound on cached state entries (summed over groups).
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        snapshot_interval: int = DEFAULT_SNAPSHOT_INTERVAL,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
    ) -> None:
        if snapshot_interval < 1:
            raise ValueError("snapshot_interval must be at least 1")
        self._db = db
        self._clock = clock
        self._snapshot_interval = snapshot_interval
        self._ids = get_sequence_generator(db, "state_group_id_seq", "state_groups", "id")
        self._cache: LruCache[int, StateMap] = LruCache("state_groups", cache_entries, size_of=len)
        # (event id, before?) -> state group: immutable once written, so only
        # deleted events (admin purges) need forgetting, see forget_events.
        self._event_groups: LruCache[tuple[str, bool], int] = LruCache("event_to_state_groups", 10_000)

    def remember_event_groups(self, rows: Iterable[tuple[str, Optional[int], Optional[int]]]) -> None:
        """``(event_id, state group after, state group before)`` of events just persisted."""
        for event_id, after, before in rows:
            if after is not None:
                self._event_groups.set((event_id, False), after)
            if before is not None:
                self._event_groups.set((event_id, True), before)

    def forget_events(self, event_ids: Iterable[str]) -> None:
        """The events were deleted (or changed): drop their cached groups."""
        self._event_groups.invalidate_many(k for e in event_ids for k in ((e, False), (e, True)))

    async def replace_event_groups(self, rows: Iterable[tuple[str, int, int]]) -> None:
        """Give events new ``(event_id, state group after, state group before)``: their state was recomputed
        (a partial-state room resynced).  The only change of the mapping besides deletion."""
        items = list(rows)
        await self._db.run_interaction(
            "replace_event_groups", lambda txn: txn.execute_batch(
                "UPDATE event_to_state_groups SET state_group = ?, state_group_before = ? WHERE event_id = ?",
                [(after, before, event_id) for event_id, after, before in items])
        )
        self.forget_events(e for e, _, _ in items)
        self.remember_event_groups(items)

    # -- writing ----------------------------------------------------------------

    async def store_state_group(
        self,
        event_id: str,
        room_id: str,
        prev_group: Optional[int],
        delta_ids: Optional[StateMap],
        current_state_ids: Optional[StateMap],
    ) -> int:
        """Store a new state group and return its id.

        Args:
            event_id: the event the state belongs to (recorded for diagnostics).
            room_id: the room.
            prev_group: a group close to the new state (typically the state
                before the event), to store a delta against; None stores a
                snapshot.
            delta_ids: the entries that differ from ``prev_group``; only used to
                build the state when ``current_state_ids`` is None.
            current_state_ids: the full new state.  When given, the stored delta
                is computed from it (so it is always exact, removals included).
        """
        prev_state: Optional[StateMap] = None
        if prev_group is not None:
            prev_state = await self.get_state_ids_for_group(prev_group)
        if current_state_ids is None:
            if prev_state is None or delta_ids is None:
                raise ValueError("store_state_group needs current_state_ids, or prev_group with delta_ids")
            state: dict[StateKey, str] = {**prev_state, **delta_ids}
        else:
            state = dict(current_state_ids)
        group = await self._db.run_interaction(
            "store_state_group", self._store_txn, event_id, room_id, prev_group, prev_state, state
        )
        self._cache.set(group, state)
        return group

    def _store_txn(
        self,
        txn: Cursor,
        event_id: str,
        room_id: str,
        prev_group: Optional[int],
        prev_state: Optional[StateMap],
        state: Mapping[StateKey, str],
    ) -> int:
        group = self._ids.next_id_txn(txn)
        rows: list[tuple[int, str, str, Optional[str]]] = []
        chain_length = 0
        if prev_group is not None and prev_state is not None:
            txn.execute("SELECT chain_length, room_id FROM state_groups WHERE id = ?", (prev_group,))
            row = txn.fetchone()
            if row is None:
                raise ValueError(f"unknown prev state group {prev_group}")
            if row[1] != room_id:
                raise ValueError(f"prev state group {prev_group} belongs to {row[1]}, not {room_id}")
            # Set operations on the views run in C (the maps of a large room have thousands of keys).
            delta_rows: list[tuple[int, str, str, Optional[str]]] = [
                (group, t, sk, eid) for (t, sk), eid in state.items() - prev_state.items()
            ]
            delta_rows.extend((group, t, sk, None) for (t, sk) in prev_state.keys() - state.keys())
            # A delta as large as the state saves nothing; a long chain slows reads.
            if int(row[0]) + 1 <= self._snapshot_interval and len(delta_rows) < max(1, len(state)):
                chain_length = int(row[0]) + 1
                rows = delta_rows
        if chain_length == 0:
            rows = [(group, t, sk, eid) for (t, sk), eid in state.items()]  # a snapshot
        txn.execute(
            "INSERT INTO state_groups (id, room_id, event_id, chain_length) VALUES (?, ?, ?, ?)",
            (group, room_id, event_id, chain_length),
        )
        if chain_length:
            txn.execute(
                "INSERT INTO state_group_edges (state_group, prev_state_group) VALUES (?, ?)", (group, prev_group)
            )
        txn.execute_batch(
            "INSERT INTO state_groups_state (state_group, type, state_key, event_id) VALUES (?, ?, ?, ?)", rows
        )
        return group

    # -- reading ----------------------------------------------------------------

    async def get_state_ids_for_group(self, group: int) -> StateMap:
        """The full state of a group as ``{(type, state_key): event_id}``. Do not mutate it."""
        return (await self.get_state_ids_for_groups([group]))[group]

    async def get_state_ids_for_groups(self, groups: Iterable[int]) -> dict[int, StateMap]:
        """Several groups at once (state resolution loads one per extremity). Unknown groups raise."""
        result: dict[int, StateMap] = {}
        missing = []
        for group in dict.fromkeys(groups):
            cached = self._cache.get(group)
            if cached is not None:
                result[group] = cached
            else:
                missing.append(group)
        if missing:
            known = self._cache.items_snapshot()
            fetched = await self._db.run_interaction("get_state_groups", _load_groups_txn, missing, known)
            for group, state in fetched.items():
                self._cache.set(group, state)
            result.update(fetched)
        return result

    async def get_state_group_for_event(self, event_id: str) -> Optional[int]:
        """The state group after ``event_id`` (None for outliers and unknown events)."""
        return (await self.get_state_groups_for_events([event_id])).get(event_id)

    async def get_state_groups_for_events(self, event_ids: Iterable[str], *, before: bool = False) -> dict[str, int]:
        """``{event_id: state group}`` after (or, with ``before``, before) each event that has one."""
        column = "state_group_before" if before else "state_group"
        found_cached: dict[str, int] = {}
        ids: list[str] = []
        for event_id in dict.fromkeys(event_ids):
            hit = self._event_groups.get((event_id, before))
            if hit is not None:
                found_cached[event_id] = hit
            else:
                ids.append(event_id)
        if not ids:
            return found_cached
        generation = self._event_groups.generation

        def _txn(txn: Cursor) -> dict[str, int]:
            found: dict[str, int] = {}
            for chunk in batch_iter(ids, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "event_id", chunk)
                txn.execute(
                    f"SELECT event_id, {column} FROM event_to_state_groups WHERE {clause} AND {column} IS NOT NULL",
                    args,
                )
                found.update((r[0], int(r[1])) for r in txn)
            return found

        found = await self._db.run_interaction("get_state_groups_for_events", _txn)
        if generation == self._event_groups.generation:
            for event_id, group in found.items():
                self._event_groups.set((event_id, before), group)
        found.update(found_cached)
        return found

    async def get_state_ids_for_event(self, event_id: str, *, before: bool = False) -> Optional[StateMap]:
        """The state after (or before) an event, None if the event has no state group."""
        groups = await self.get_state_groups_for_events([event_id], before=before)
        if event_id not in groups:
            return None
        return await self.get_state_ids_for_group(groups[event_id])


def _load_groups_txn(txn: Cursor, groups: list[int], known: Mapping[int, StateMap]) -> dict[int, StateMap]:
    """Rebuild groups from the nearest known ancestor (or snapshot) and the deltas after it."""
    chains: dict[int, list[int]] = {}
    for group in groups:
        txn.execute(
            "WITH RECURSIVE chain(state_group, depth) AS ("
            " SELECT CAST(? AS BIGINT), 0"
            " UNION ALL"
            " SELECT e.prev_state_group, c.depth + 1 FROM state_group_edges e"
            " JOIN chain c ON e.state_group = c.state_group"
            ") SELECT state_group FROM chain ORDER BY depth",
            (group,),
        )
        chain: list[int] = []
        for (sg,) in txn:
            sg = int(sg)
            if sg != group and sg in known:
                chain.append(sg)  # the base to build on; its own rows are not needed
                break
            chain.append(sg)
        chains[group] = chain

    needed = {sg for chain in chains.values() for sg in chain if sg not in known}
    rows_by_group: dict[int, list[tuple[str, str, Optional[str]]]] = {sg: [] for sg in needed}
    present: set[int] = set()
    for chunk in batch_iter(sorted(needed), IN_LIST_BATCH):
        clause, args = in_list_clause(txn.engine, "id", chunk)
        txn.execute(f"SELECT id FROM state_groups WHERE {clause}", args)
        present.update(int(r[0]) for r in txn)
        clause, args = in_list_clause(txn.engine, "state_group", chunk)
        txn.execute(f"SELECT state_group, type, state_key, event_id FROM state_groups_state WHERE {clause}", args)
        for sg, typ, state_key, event_id in txn:
            rows_by_group[int(sg)].append((typ, state_key, event_id))
    absent = needed - present
    if absent:
        raise KeyError(f"unknown state groups: {sorted(absent)}")

    result: dict[int, StateMap] = {}
    for group, chain in chains.items():
        base = chain[-1]
        state: dict[StateKey, str] = dict(known[base]) if base in known and base != group else {}
        for sg in reversed(chain):
            if sg in known and sg != group:
                continue
            for typ, state_key, event_id in rows_by_group[sg]:
                if event_id is None:
                    state.pop((typ, state_key), None)
                else:
                    state[(typ, state_key)] = event_id
        result[group] = state
    return result
