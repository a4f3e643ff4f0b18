"""Reading rooms' current state and memberships.

``current_state_events`` and the membership tables are written by
:class:`matrixd.storage.events_writer.EventWriter` in the transaction that
persists events.  This store reads them through small caches that must be
invalidated when state changes: the writer does it after its commit, and other
processes must call :meth:`CurrentStateStore.invalidate_room` /
:meth:`invalidate_users` when the events stream (or the current state delta
rows, :meth:`get_current_state_deltas`) shows a change.
"""

from __future__ import annotations

import bisect
from typing import Any, Collection, Iterable, Optional

from matrixd.events.event import Event, StateMap
from matrixd.storage.cache import LruCache, RecentStreamRows
from matrixd.storage.database import Cursor, Database
from matrixd.storage.events import EventStore
from matrixd.storage.models import CurrentStateChange, CurrentStateDeltaRow, MemberProfile, MembershipInfo
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, in_list_clause
from matrixd.util.clock import Clock

MEMBER = "m.room.member"
JOIN = "join"

#: A stream id with more state delta rows than this is not kept among the recent rows.
_MAX_RECENT_ROWS_PER_ID = 100


class CurrentStateStore:
    def __init__(self, db: Database, clock: Clock, event_store: EventStore, *, cache_size: int = 10_000) -> None:
        self._db = db
        self._clock = clock
        self._events = event_store
        self._state_cache: LruCache[str, StateMap] = LruCache("current_state_ids", cache_size)
        self._members_cache: LruCache[str, tuple[str, ...]] = LruCache("users_in_room", cache_size)
        self._rooms_cache: LruCache[str, frozenset[str]] = LruCache("rooms_for_user", cache_size * 5)
        self._local_memberships_cache: Optional[LruCache[str, tuple[MembershipInfo, ...]]] = None
        self._recent_deltas: Optional[RecentStreamRows[CurrentStateDeltaRow]] = None
        self._is_writer = False

    # -- invalidation -----------------------------------------------------------

    def invalidate_room(self, room_id: str) -> None:
        """The room's current state changed."""
        self._state_cache.invalidate(room_id)
        self._members_cache.invalidate(room_id)

    def invalidate_room_from_stream(self, room_id: str) -> None:
        """The events or state deltas stream shows a change of the room's state.

        The writer's process has applied its own changes already (it writes
        every row of those streams, see :meth:`apply_state_change`): dropping
        its caches again would only make the next join re-read a large room.
        """
        if not self._is_writer:
            self.invalidate_room(room_id)

    def apply_state_change(self, room_id: str, change: CurrentStateChange) -> None:
        """The writer committed ``change``: update the room's cached state and members in place.

        Re-reading them after every change would read every member of a large
        room at each join. A cached map that does not show the change's previous
        event ids (a change this process did not see) is dropped instead.
        """
        state = self._state_cache.peek(room_id)
        members = self._members_cache.peek(room_id)
        self.invalidate_room(room_id)  # new generations: no read begun before the change caches its result
        if state is None or any(state.get(k) != eid for k, eid in change.previous.items()):
            return
        new_state = dict(state)
        for key in change.previous:
            if key not in change.inserted:
                new_state.pop(key, None)
        new_state.update(change.inserted)
        self._state_cache.set(room_id, new_state)
        if members is None:
            return
        if len(change.joined) > 64:  # a resync's thousands: one sort, not thousands of list inserts
            kept = set(members).difference(change.joined)
            kept.update(u for u, is_joined in change.joined.items() if is_joined)
            self._members_cache.set(room_id, tuple(sorted(kept)))
            return
        joined = list(members)
        for user_id, is_joined in change.joined.items():
            i = bisect.bisect_left(joined, user_id)
            present = i < len(joined) and joined[i] == user_id
            if is_joined and not present:
                joined.insert(i, user_id)
            elif present and not is_joined:
                del joined[i]
        self._members_cache.set(room_id, tuple(joined))

    def invalidate_users(self, user_ids: Iterable[str]) -> None:
        """These users' memberships changed (somewhere)."""
        users = list(user_ids)
        self._rooms_cache.invalidate_many(users)
        if self._local_memberships_cache is not None:
            self._local_memberships_cache.invalidate_many(users)

    def invalidate_all_local_memberships(self) -> None:
        """A room's membership rows were deleted wholesale (room deletion)."""
        if self._local_memberships_cache is not None:
            self._local_memberships_cache.clear()
        if self._recent_deltas is not None:
            self._recent_deltas.clear()

    def enable_writer_caches(self) -> None:
        """Called by the event writer of this process, which invalidates every change of
        local memberships (out-of-band ones included) through :meth:`invalidate_users`;
        other processes do not hear of out-of-band memberships that way, so they do not cache them."""
        self._is_writer = True
        if self._local_memberships_cache is None:
            self._local_memberships_cache = LruCache("local_memberships", 10_000)
            self._recent_deltas = RecentStreamRows(1000)

    def no_member_changes_between(self, from_token: int, to_token: int) -> bool:
        """True if it is known, without the database, that no room's current membership
        changed in ``(from_token, to_token]`` (the writer's recent deltas cover the range)."""
        if self._recent_deltas is None:
            return False
        recent = self._recent_deltas.get(from_token, to_token)
        return recent is not None and not any(r.type == "m.room.member" for _, rows in recent for r in rows)

    def written_by_writer(self, allocated: Iterable[int], rows: Iterable[CurrentStateDeltaRow]) -> None:
        """After the event writer's commit: the delta rows it wrote at the ids it allocated."""
        if self._recent_deltas is not None:
            by_id: dict[int, list[CurrentStateDeltaRow]] = {}
            for row in rows:
                by_id.setdefault(row.stream_id, []).append(row)
            # An id carrying a whole room's state (a resync's) is left unrecorded: readers get it
            # from the database once, rather than the process holding thousands of rows for it.
            large = {i for i, id_rows in by_id.items() if len(id_rows) > _MAX_RECENT_ROWS_PER_ID}
            for i in large:
                del by_id[i]
            self._recent_deltas.record((i for i in allocated if i not in large), by_id)

    # -- state ------------------------------------------------------------------

    async def get_current_state_ids(self, room_id: str) -> StateMap:
        """``{(type, state_key): event_id}`` of the room now ({} for unknown rooms). Do not mutate it."""
        cached = self._state_cache.get(room_id)
        if cached is not None:
            return cached
        generation = self._state_cache.generation
        rows = await self._db.execute(
            "get_current_state_ids",
            "SELECT type, state_key, event_id FROM current_state_events WHERE room_id = ?",
            room_id,
        )
        state = {(t, sk): eid for t, sk, eid in rows}
        self._state_cache.set_if_unchanged(room_id, state, generation)
        return state

    async def get_current_state_event_id(self, room_id: str, event_type: str, state_key: str) -> Optional[str]:
        state = await self.get_current_state_ids(room_id)
        return state.get((event_type, state_key))

    async def get_current_state_event(self, room_id: str, event_type: str, state_key: str) -> Optional[Event]:
        """The current state event for a key, None if the key is not in the room's state."""
        event_id = await self.get_current_state_event_id(room_id, event_type, state_key)
        if event_id is None:
            return None
        return await self._events.get_event(event_id)

    async def get_current_state_deltas(
        self, from_token: int, to_token: int, limit: int = 1000
    ) -> list[CurrentStateDeltaRow]:
        """Changes to any room's current state with ``from_token < stream_id <= to_token``, in order.

        Only whole stream ids are returned, so a page never splits the changes
        of one batch: the last row's stream id is a safe next ``from_token``.
        """

        if self._recent_deltas is not None:
            recent = self._recent_deltas.get(from_token, to_token)
            if recent is not None:
                return [
                    row for _, rows in recent[:limit]
                    for row in sorted(rows, key=lambda r: (r.room_id, r.type, r.state_key))
                ]

        def _txn(txn: Cursor) -> list[CurrentStateDeltaRow]:
            txn.execute(
                "SELECT stream_id FROM current_state_delta_stream WHERE stream_id > ? AND stream_id <= ?"
                " GROUP BY stream_id ORDER BY stream_id LIMIT ?",
                (from_token, to_token, limit),
            )
            ids = [int(r[0]) for r in txn]
            if not ids:
                return []
            txn.execute(
                "SELECT stream_id, room_id, type, state_key, event_id, prev_event_id"
                " FROM current_state_delta_stream WHERE stream_id > ? AND stream_id <= ?"
                " ORDER BY stream_id, room_id, type, state_key",
                (from_token, ids[-1]),
            )
            return [CurrentStateDeltaRow(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in txn]

        return await self._db.run_interaction("get_current_state_deltas", _txn)

    # -- membership -------------------------------------------------------------

    async def get_users_in_room(self, room_id: str) -> list[str]:
        """Users whose current membership is join, sorted."""
        return list(await self.get_users_in_room_tuple(room_id))

    async def get_users_in_room_tuple(self, room_id: str) -> tuple[str, ...]:
        """:meth:`get_users_in_room` without a copy: the same tuple object until the membership changes,
        so a caller may key its own per-room data on the tuple's identity."""
        cached = self._members_cache.get(room_id)
        if cached is not None:
            return cached
        generation = self._members_cache.generation
        rows = await self._db.execute(
            "get_users_in_room",
            "SELECT state_key FROM current_state_events"
            " WHERE room_id = ? AND type = 'm.room.member' AND membership = 'join'",
            room_id,
        )
        # Sorted here, not by the database: PostgreSQL's collation may order
        # differently, and apply_state_change keeps the tuple in Python's order.
        users = tuple(sorted(r[0] for r in rows))
        self._members_cache.set_if_unchanged(room_id, users, generation)
        return users

    async def get_joined_member_profiles(self, room_id: str) -> dict[str, MemberProfile]:
        """Joined users with the displayname/avatar_url of their join event."""
        rows = await self._db.execute(
            "get_joined_member_profiles",
            "SELECT c.state_key, m.displayname, m.avatar_url FROM current_state_events c"
            " JOIN room_memberships m ON m.event_id = c.event_id"
            " WHERE c.room_id = ? AND c.type = 'm.room.member' AND c.membership = 'join'",
            room_id,
        )
        return {r[0]: MemberProfile(r[1], r[2]) for r in rows}

    async def get_rooms_for_user(self, user_id: str) -> frozenset[str]:
        """Rooms the user (local or remote) is joined to, by this server's view of current state."""
        cached = self._rooms_cache.get(user_id)
        if cached is not None:
            return cached
        generation = self._rooms_cache.generation
        # The literal type lets both engines use the partial index on members.
        rows = await self._db.execute(
            "get_rooms_for_user",
            "SELECT room_id FROM current_state_events"
            " WHERE type = 'm.room.member' AND state_key = ? AND membership = 'join'",
            user_id,
        )
        rooms = frozenset(r[0] for r in rows)
        self._rooms_cache.set_if_unchanged(user_id, rooms, generation)
        return rooms

    async def get_membership(self, room_id: str, user_id: str) -> Optional[MembershipInfo]:
        """The user's current membership of the room.

        For a local user, their latest membership (``local_current_membership``,
        which follows the room's current state while this server is in the room
        and also holds out-of-band invites, knocks and leaves of rooms it is not
        in, or no longer in); for others, the room's current state.  None if the
        user has no membership at all.
        """

        def _txn(txn: Cursor) -> Optional[MembershipInfo]:
            txn.execute(
                "SELECT l.membership, l.event_id, m.sender, l.stream_ordering FROM local_current_membership l"
                " JOIN room_memberships m ON m.event_id = l.event_id"
                " WHERE l.room_id = ? AND l.user_id = ?",
                (room_id, user_id),
            )
            row = txn.fetchone()
            if row is None:
                txn.execute(
                    "SELECT m.membership, m.event_id, m.sender, m.stream_ordering FROM current_state_events c"
                    " JOIN room_memberships m ON m.event_id = c.event_id"
                    " WHERE c.room_id = ? AND c.type = 'm.room.member' AND c.state_key = ?",
                    (room_id, user_id),
                )
                row = txn.fetchone()
            if row is None:
                return None
            return MembershipInfo(room_id, user_id, row[0], row[1], row[2], int(row[3]))

        return await self._db.run_interaction("get_membership", _txn)

    async def get_local_memberships(
        self, user_id: str, memberships: Optional[Collection[str]] = None
    ) -> list[MembershipInfo]:
        """A local user's current memberships (all, or those in ``memberships``), by stream order.

        Includes invites and knocks of rooms the server is not in; what sync
        shows as the user's rooms.
        """

        cache = self._local_memberships_cache if memberships is None else None
        generation = 0
        if cache is not None:
            hit = cache.get(user_id)
            if hit is not None:
                return list(hit)
            generation = cache.generation

        def _txn(txn: Cursor) -> list[MembershipInfo]:
            sql_text = (
                "SELECT l.room_id, l.membership, l.event_id, m.sender, l.stream_ordering"
                " FROM local_current_membership l JOIN room_memberships m ON m.event_id = l.event_id"
                " WHERE l.user_id = ?"
            )
            args: list[object] = [user_id]
            if memberships is not None:
                clause, in_args = in_list_clause(txn.engine, "l.membership", list(memberships))
                sql_text += f" AND {clause}"
                args.extend(in_args)
            txn.execute(sql_text + " ORDER BY l.stream_ordering", args)
            return [MembershipInfo(r[0], user_id, r[1], r[2], r[3], int(r[4])) for r in txn]

        result = await self._db.run_interaction("get_local_memberships", _txn)
        if cache is not None:
            cache.set_if_unchanged(user_id, tuple(result), generation)
        return result

    # -- for /sync ---------------------------------------------------------------

    async def get_replaced_state_event_ids(self, event_ids: Collection[str]) -> dict[str, Optional[str]]:
        """For state events that became current state, the event each replaced (None: it set a new key).

        Events that never became current state are absent.  Read from the
        current state delta stream (indexed by event id), so it is one query
        for any number of events.
        """
        ids = list(event_ids)

        def _txn(txn: Cursor) -> dict[str, Optional[str]]:
            found: dict[str, Optional[str]] = {}
            for chunk in batch_iter(ids, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "event_id", chunk)
                txn.execute(
                    f"SELECT event_id, prev_event_id FROM current_state_delta_stream WHERE {clause}"
                    " ORDER BY stream_id",
                    args,
                )
                for event_id, prev in txn:
                    found.setdefault(event_id, prev)
            return found

        if not ids:
            return {}
        return await self._db.run_interaction("get_replaced_state_event_ids", _txn)

    async def get_member_counts(self, room_ids: Collection[str]) -> dict[str, tuple[int, int]]:
        """``{room_id: (joined, invited)}`` by current state, for many rooms in one query."""
        rooms = list(room_ids)

        def _txn(txn: Cursor) -> dict[str, tuple[int, int]]:
            counts: dict[str, list[int]] = {r: [0, 0] for r in rooms}
            for chunk in batch_iter(rooms, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "room_id", chunk)
                txn.execute(
                    "SELECT room_id, membership, COUNT(*) FROM current_state_events"
                    f" WHERE {clause} AND type = 'm.room.member' AND membership IN ('join', 'invite')"
                    " GROUP BY room_id, membership",
                    args,
                )
                for room_id, membership, n in txn:
                    counts[room_id][0 if membership == JOIN else 1] = int(n)
            return {r: (c[0], c[1]) for r, c in counts.items()}

        if not rooms:
            return {}
        return await self._db.run_interaction("get_member_counts", _txn)

    async def get_heroes(self, room_ids: Collection[str], exclude_user: str, limit: int = 5) -> dict[str, list[str]]:
        """Up to ``limit`` members per room to name it by (room summary ``m.heroes``).

        Joined and invited members first, in the stream order of their member
        events; if there are none, left and banned members.  ``exclude_user``
        (the syncing user) is never listed.
        """
        rooms = list(room_ids)

        def _txn(txn: Cursor) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for room_id in rooms:
                txn.execute(
                    "SELECT c.state_key FROM current_state_events c"
                    " JOIN room_memberships m ON m.event_id = c.event_id"
                    " WHERE c.room_id = ? AND c.type = 'm.room.member' AND c.state_key != ?"
                    " AND c.membership IN ('join', 'invite') ORDER BY m.stream_ordering LIMIT ?",
                    (room_id, exclude_user, limit),
                )
                heroes = [r[0] for r in txn]
                if not heroes:
                    txn.execute(
                        "SELECT c.state_key FROM current_state_events c"
                        " JOIN room_memberships m ON m.event_id = c.event_id"
                        " WHERE c.room_id = ? AND c.type = 'm.room.member' AND c.state_key != ?"
                        " AND c.membership IN ('leave', 'ban') ORDER BY m.stream_ordering LIMIT ?",
                        (room_id, exclude_user, limit),
                    )
                    heroes = [r[0] for r in txn]
                out[room_id] = heroes
            return out

        if not rooms:
            return {}
        return await self._db.run_interaction("get_heroes", _txn)

    async def get_memberships_at(
        self, user_id: str, room_ids: Collection[str], stream_ordering: int
    ) -> dict[str, MembershipInfo]:
        """The user's membership of each room as of a stream position (rooms with none are absent).

        The latest membership event of the user at or before the position, in
        stream order: what an incremental sync compares against to tell a new
        join from a profile change.
        """
        rooms = list(room_ids)

        def _txn(txn: Cursor) -> dict[str, MembershipInfo]:
            out: dict[str, MembershipInfo] = {}
            for room_id in rooms:
                txn.execute(
                    "SELECT membership, event_id, sender, stream_ordering FROM room_memberships"
                    " WHERE room_id = ? AND user_id = ? AND stream_ordering <= ?"
                    " ORDER BY stream_ordering DESC LIMIT 1",
                    (room_id, user_id, stream_ordering),
                )
                row: Optional[tuple[Any, ...]] = txn.fetchone()
                if row is not None:
                    out[room_id] = MembershipInfo(room_id, user_id, row[0], row[1], row[2], int(row[3]))
            return out

        if not rooms:
            return {}
        return await self._db.run_interaction("get_memberships_at", _txn)

    async def get_current_state_ids_of_types(
        self, room_ids: Collection[str], types: Collection[str]
    ) -> dict[str, dict[tuple[str, str], str]]:
        """Current state entries of the given types for many rooms, in one query (rooms without any absent)."""
        rooms = list(room_ids)
        type_list = sorted(types)

        def _txn(txn: Cursor) -> dict[str, dict[tuple[str, str], str]]:
            out: dict[str, dict[tuple[str, str], str]] = {}
            type_clause, type_args = in_list_clause(txn.engine, "type", type_list)
            for chunk in batch_iter(rooms, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "room_id", chunk)
                txn.execute(
                    f"SELECT room_id, type, state_key, event_id FROM current_state_events WHERE {clause}"
                    f" AND {type_clause}",
                    [*args, *type_args],
                )
                for room_id, t, sk, eid in txn:
                    out.setdefault(room_id, {})[(t, sk)] = eid
            return out

        if not rooms or not type_list:
            return {}
        return await self._db.run_interaction("get_current_state_ids_of_types", _txn)

    async def get_joined_users_in_rooms(self, room_ids: Collection[str]) -> set[str]:
        """Everyone joined to any of the rooms, in one query (uses the per-room cache where warm)."""
        users: set[str] = set()
        missing = []
        for room_id in room_ids:
            cached = self._members_cache.get(room_id)
            if cached is not None:
                users.update(cached)
            else:
                missing.append(room_id)

        def _txn(txn: Cursor) -> set[str]:
            found: set[str] = set()
            for chunk in batch_iter(missing, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "room_id", chunk)
                txn.execute(
                    "SELECT DISTINCT state_key FROM current_state_events"
                    f" WHERE {clause} AND type = 'm.room.member' AND membership = 'join'",
                    args,
                )
                found.update(r[0] for r in txn)
            return found

        if missing:
            users |= await self._db.run_interaction("get_joined_users_in_rooms", _txn)
        return users
