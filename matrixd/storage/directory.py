"""The published room directory: listing public rooms by size, searching them, their summary state.

Listing orders public rooms by joined members (largest first), then room id,
and pages with a key of ``(joined members, room id)`` so each page is one
indexed query with a ``LIMIT``, however deep the client pages.  Counts are
read from ``current_state_events`` (its ``membership`` column), so they are
always current; a room whose count changes between two pages may move, as in
any live ranking.

The search term is matched in SQL against the name, topic and canonical
alias of each public room (redacted state events do not match), with the
JSON extraction of the engine at hand.
"""

from __future__ import annotations

from typing import Any, Collection, Optional, Sequence

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, in_list_clause
from matrixd.util.clock import Clock

#: The state a directory entry shows (all with state key "").
SUMMARY_STATE_TYPES = (
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
)
_SEARCHED_TYPES = ("m.room.name", "m.room.topic", "m.room.canonical_alias")


@attrs.frozen(slots=True)
class DirectoryKey:
    """A position in the listing: the room with these members and id (next or previous page from it)."""

    joined_members: int
    room_id: str


@attrs.frozen(slots=True)
class DirectoryQuery:
    """Which public rooms to list.

    ``search_term``: case-insensitive substring of the name, topic or alias.
    ``room_types``: the ``m.room.create`` ``type`` values wanted (None in the
    list selects rooms without a type); None lists every type.
    """

    search_term: Optional[str] = None
    room_types: Optional[tuple[Optional[str], ...]] = None


def _json_text(engine: str, column: str, path: Sequence[str]) -> str:
    """SQL for the string at ``path`` in a JSON text column (NULL if absent)."""
    if engine == "postgres":
        return f"(CAST({column} AS JSONB) #>> '{{{','.join(path)}}}')"
    return f"json_extract({column}, '$.{'.'.join(path)}')"


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class PublicRoomsStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def _listing_sql(self, engine: str, query: DirectoryQuery) -> tuple[str, list[Any]]:
        """The public rooms matching ``query`` as a subquery of ``(room_id, joined, room_type)``."""
        args: list[Any] = []
        room_type = (
            "(SELECT " + _json_text(engine, "cj.json", ("content", "type")) + " FROM current_state_events cr"
            " JOIN event_json cj ON cj.event_id = cr.event_id"
            " WHERE cr.room_id = r.room_id AND cr.type = 'm.room.create' AND cr.state_key = '')"
        )
        inner = (
            "SELECT r.room_id AS room_id,"
            " (SELECT COUNT(*) FROM current_state_events m WHERE m.room_id = r.room_id"
            "  AND m.type = 'm.room.member' AND m.membership = 'join') AS joined,"
            f" {room_type} AS room_type"
            " FROM rooms r WHERE r.is_public"
        )
        if query.search_term:
            texts = " || ' ' || ".join(
                f"COALESCE({_json_text(engine, 'sj.json', ('content', key))}, '')"
                for key in ("name", "topic", "alias")
            )
            types_clause = ", ".join(f"'{t}'" for t in _SEARCHED_TYPES)
            inner += (
                " AND r.room_id IN (SELECT sc.room_id FROM current_state_events sc"
                " JOIN event_json sj ON sj.event_id = sc.event_id"
                f" WHERE sc.type IN ({types_clause}) AND sc.state_key = ''"
                " AND NOT EXISTS (SELECT 1 FROM redactions x WHERE x.redacts = sc.event_id)"
                f" AND LOWER({texts}) LIKE ? ESCAPE '\\')"
            )
            args.append("%" + _escape_like(query.search_term.lower()) + "%")
        outer_clauses: list[str] = []
        if query.room_types is not None:
            wanted = [t for t in query.room_types if t is not None]
            alternatives: list[str] = []
            if wanted:
                alternatives.append(f"room_type IN ({', '.join('?' * len(wanted))})")
                args.extend(wanted)
            if None in query.room_types:
                alternatives.append("room_type IS NULL")
            outer_clauses.append("(" + (" OR ".join(alternatives) or "1 = 0") + ")")
        where = (" WHERE " + " AND ".join(outer_clauses)) if outer_clauses else ""
        return f"SELECT room_id, joined FROM ({inner}) listing{where}", args

    async def get_public_rooms(
        self,
        query: DirectoryQuery,
        *,
        limit: Optional[int],
        after: Optional[DirectoryKey] = None,
        before: Optional[DirectoryKey] = None,
    ) -> list[DirectoryKey]:
        """A page of matching public rooms, largest first.

        ``after``: rooms ranked after that key, from the top; ``before``: the
        ``limit`` rooms ranked just before that key (still returned largest
        first).  ``limit`` None returns every matching room.
        """

        def _txn(txn: Cursor) -> list[DirectoryKey]:
            listing, args = self._listing_sql(txn.engine.name, query)
            sql_text = f"SELECT room_id, joined FROM ({listing}) page"
            if after is not None:
                sql_text += " WHERE (joined < ? OR (joined = ? AND room_id > ?))"
                args.extend([after.joined_members, after.joined_members, after.room_id])
                sql_text += " ORDER BY joined DESC, room_id ASC"
            elif before is not None:
                sql_text += " WHERE (joined > ? OR (joined = ? AND room_id < ?))"
                args.extend([before.joined_members, before.joined_members, before.room_id])
                sql_text += " ORDER BY joined ASC, room_id DESC"
            else:
                sql_text += " ORDER BY joined DESC, room_id ASC"
            if limit is not None:
                sql_text += " LIMIT ?"
                args.append(limit)
            txn.execute(sql_text, args)
            keys = [DirectoryKey(int(r[1]), r[0]) for r in txn]
            if before is not None:
                keys.reverse()
            return keys

        return await self._db.run_interaction("get_public_rooms", _txn)

    async def count_public_rooms(self, query: DirectoryQuery) -> int:
        """How many public rooms match ``query``."""

        def _txn(txn: Cursor) -> int:
            listing, args = self._listing_sql(txn.engine.name, query)
            txn.execute(f"SELECT COUNT(*) FROM ({listing}) counted", args)
            row = txn.fetchone()
            return int(row[0]) if row else 0

        return await self._db.run_interaction("count_public_rooms", _txn)

    async def get_summary_state_ids(self, room_ids: Collection[str]) -> dict[str, dict[str, str]]:
        """``{room_id: {event type: event id}}`` of the directory summary state of each room."""
        rooms = sorted(set(room_ids))

        def _txn(txn: Cursor) -> dict[str, dict[str, str]]:
            found: dict[str, dict[str, str]] = {r: {} for r in rooms}
            for chunk in batch_iter(rooms, IN_LIST_BATCH):
                room_clause, room_args = in_list_clause(txn.engine, "room_id", chunk)
                type_clause, type_args = in_list_clause(txn.engine, "type", SUMMARY_STATE_TYPES)
                txn.execute(
                    "SELECT room_id, type, event_id FROM current_state_events"
                    f" WHERE {room_clause} AND {type_clause} AND state_key = ''",
                    [*room_args, *type_args],
                )
                for room_id, event_type, event_id in txn:
                    found[room_id][event_type] = event_id
            return found

        if not rooms:
            return {}
        return await self._db.run_interaction("get_summary_state_ids", _txn)
