"""SQL for the server administration API: user and room listings, rate-limit
overrides, blocked rooms, resumable admin jobs, media quarantine, and the
batched deletes behind room deletion and history purges.

Purge statements work on bounded batches of event ids (each batch its own
transaction) so a large room never holds a long lock; callers loop.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.sql import in_list_clause
from matrixd.types import JsonDict
from matrixd.util.clock import Clock

#: Columns ``GET /_synapse/admin/v2/users`` may sort by, mapped to SQL.
USER_ORDER_COLUMNS = {
    "name": "u.name", "is_guest": "u.is_guest", "admin": "u.admin", "user_type": "u.user_type",
    "deactivated": "u.deactivated", "shadow_banned": "u.shadow_banned", "locked": "u.locked",
    "creation_ts": "u.creation_ts", "displayname": "p.displayname", "avatar_url": "p.avatar_url",
}

#: Columns ``GET /_synapse/admin/v1/rooms`` may sort by.
ROOM_ORDER_COLUMNS = {
    "name": "name", "canonical_alias": "canonical_alias", "joined_members": "joined_members",
    "joined_local_members": "joined_local_members", "version": "version", "creator": "creator",
    "encryption": "encryption", "federatable": "federatable", "public": "public",
    "join_rules": "join_rules", "guest_access": "guest_access", "history_visibility": "history_visibility",
    "state_events": "state_events",
}

# Tables holding per-event rows, deleted with the event (column is event_id).
_EVENT_TABLES = ("event_json", "event_edges", "event_auth", "redactions", "event_to_state_groups",
                 "room_memberships", "event_txn_ids")
# Room-scoped tables cleared once a deleted room's events and state groups are gone.
_ROOM_TABLES = ("current_state_events", "current_state_delta_stream", "local_current_membership",
                "event_forward_extremities", "event_backward_extremities", "room_aliases", "forgotten_rooms",
                "user_directory_public_rooms", "event_push_actions", "push_room_joins", "rooms")


DESTINATION_COLUMNS = "destination, retry_last_ts, retry_interval, failure_ts, last_successful_stream_ordering"
DESTINATION_ORDER_COLUMNS = frozenset(DESTINATION_COLUMNS.split(", "))


@attrs.frozen(slots=True)
class AdminUserRow:
    name: str
    is_guest: bool
    admin: bool
    user_type: Optional[str]
    deactivated: bool
    shadow_banned: bool
    locked: bool
    creation_ts: int
    displayname: Optional[str]
    avatar_url: Optional[str]


@attrs.frozen(slots=True)
class AdminJob:
    job_id: str
    kind: str
    room_id: Optional[str]
    params: JsonDict
    status: str
    progress: JsonDict
    error: Optional[str]
    created_ts: int
    updated_ts: int


def _job(row: Sequence[Any]) -> AdminJob:
    return AdminJob(row[0], row[1], row[2], json.loads(row[3]), row[4], json.loads(row[5]), row[6], int(row[7]),
                    int(row[8]))


_JOB_COLUMNS = "job_id, kind, room_id, params, status, progress, error, created_ts, updated_ts"


class AdminStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    # -- users ---------------------------------------------------------------------------

    async def list_users(
        self, *, start: int, limit: int, name: Optional[str], user_id: Optional[str], guests: bool,
        deactivated: bool, order_by: str, direction: str,
    ) -> tuple[list[AdminUserRow], int]:
        """A page of local users and the total matching the filters."""
        where: list[str] = []
        args: list[Any] = []
        if name is not None:
            where.append("(lower(u.name) LIKE ? OR lower(p.displayname) LIKE ?)")
            args += [f"%{name.lower()}%"] * 2
        elif user_id is not None:
            where.append("lower(u.name) LIKE ?")
            args.append(f"%{user_id.lower()}%")
        if not guests:
            where.append("NOT u.is_guest")
        if not deactivated:
            where.append("NOT u.deactivated")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        order = USER_ORDER_COLUMNS[order_by]
        sort = "DESC" if direction == "b" else "ASC"
        base = "FROM users u LEFT JOIN profiles p ON p.user_id = u.name " + clause

        def _txn(txn: Cursor) -> tuple[list[AdminUserRow], int]:
            txn.execute(f"SELECT COUNT(*) {base}", args)
            row = txn.fetchone()
            total = int(row[0]) if row else 0
            txn.execute(
                "SELECT u.name, u.is_guest, u.admin, u.user_type, u.deactivated, u.shadow_banned, u.locked,"
                f" u.creation_ts, p.displayname, p.avatar_url {base} ORDER BY {order} {sort}, u.name {sort}"
                " LIMIT ? OFFSET ?", [*args, limit, start],
            )
            users = [AdminUserRow(r[0], bool(r[1]), bool(r[2]), r[3], bool(r[4]), bool(r[5]), bool(r[6]),
                                  int(r[7]), r[8], r[9]) for r in txn]
            return users, total

        return await self._db.run_interaction("admin_list_users", _txn)

    async def set_user_flags(self, user_id: str, *, shadow_banned: Optional[bool] = None,
                             locked: Optional[bool] = None, user_type: Optional[str] = None,
                             set_user_type: bool = False) -> None:
        """Update the flags given (callers invalidate the UserStore cache)."""
        sets: list[str] = []
        args: list[Any] = []
        if shadow_banned is not None:
            sets.append("shadow_banned = ?")
            args.append(shadow_banned)
        if locked is not None:
            sets.append("locked = ?")
            args.append(locked)
        if set_user_type:
            sets.append("user_type = ?")
            args.append(user_type)
        if sets:
            await self._db.execute("admin_set_user_flags", f"UPDATE users SET {', '.join(sets)} WHERE name = ?",
                                   *args, user_id)

    async def get_ratelimit_override(self, user_id: str) -> Optional[tuple[int, int]]:
        rows = await self._db.execute(
            "get_ratelimit_override",
            "SELECT messages_per_second, burst_count FROM ratelimit_override WHERE user_id = ?", user_id)
        return (int(rows[0][0] or 0), int(rows[0][1] or 0)) if rows else None

    async def set_ratelimit_override(self, user_id: str, per_second: int, burst_count: int) -> None:
        await self._db.simple_upsert("ratelimit_override", {"user_id": user_id},
                                     {"messages_per_second": per_second, "burst_count": burst_count},
                                     desc="set_ratelimit_override")

    async def delete_ratelimit_override(self, user_id: str) -> None:
        await self._db.simple_delete("ratelimit_override", {"user_id": user_id}, desc="delete_ratelimit_override")

    async def get_user_media(self, user_id: str, server_name: str, start: int, limit: int,
                             direction: str) -> tuple[list[Any], int]:
        """A page of a user's uploads (newest first unless ``direction`` is 'f') and their count."""
        sort = "ASC" if direction == "f" else "DESC"

        def _txn(txn: Cursor) -> tuple[list[Any], int]:
            txn.execute("SELECT COUNT(*) FROM local_media WHERE user_id = ?", (user_id,))
            row = txn.fetchone()
            txn.execute(
                "SELECT m.media_id, m.media_type, m.media_length, m.upload_name, m.created_ts, m.uploaded_ts,"
                " q.quarantined_by, pr.media_id FROM local_media m"
                " LEFT JOIN media_quarantine q ON q.media_id = m.media_id AND q.server_name = ?"
                " LEFT JOIN media_protected pr ON pr.media_id = m.media_id AND pr.server_name = ?"
                f" WHERE m.user_id = ? ORDER BY m.created_ts {sort}, m.media_id {sort} LIMIT ? OFFSET ?",
                (server_name, server_name, user_id, limit, start),
            )
            return txn.fetchall(), int(row[0]) if row else 0

        return await self._db.run_interaction("admin_user_media", _txn)

    # -- rooms ---------------------------------------------------------------------------

    async def list_room_ids(self) -> list[tuple[str, str, Optional[str], bool]]:
        """Every room the server knows: (room_id, version, creator, is_public)."""
        rows = await self._db.execute("admin_list_rooms", "SELECT room_id, room_version, creator, is_public FROM rooms")
        return [(r[0], r[1], r[2], bool(r[3])) for r in rows]

    async def get_room_counts(self, room_ids: Sequence[str], server_name: str) -> dict[str, tuple[int, int, int]]:
        """(joined members, joined local members, state events) per room."""
        out: dict[str, tuple[int, int, int]] = {r: (0, 0, 0) for r in room_ids}
        suffix = ":" + server_name

        def _txn(txn: Cursor) -> None:
            for i in range(0, len(room_ids), 500):
                chunk = list(room_ids[i:i + 500])
                clause, in_args = in_list_clause(txn.engine, "room_id", chunk)
                txn.execute(
                    "SELECT room_id, COUNT(*), SUM(CASE WHEN membership = 'join' THEN 1 ELSE 0 END),"
                    " SUM(CASE WHEN membership = 'join' AND state_key LIKE ? THEN 1 ELSE 0 END)"
                    f" FROM current_state_events WHERE {clause} GROUP BY room_id",
                    ["%" + suffix, *in_args],
                )
                for r in txn.fetchall():
                    out[r[0]] = (int(r[2] or 0), int(r[3] or 0), int(r[1]))

        await self._db.run_interaction("admin_room_counts", _txn)
        return out

    async def block_room(self, room_id: str, user_id: str) -> None:
        await self._db.simple_upsert("blocked_rooms", {"room_id": room_id}, {"user_id": user_id}, desc="block_room")

    async def unblock_room(self, room_id: str) -> None:
        await self._db.simple_delete("blocked_rooms", {"room_id": room_id}, desc="unblock_room")

    async def get_room_block(self, room_id: str) -> Optional[str]:
        """The admin who blocked the room, or None if it is not blocked."""
        rows = await self._db.execute("get_room_block", "SELECT user_id FROM blocked_rooms WHERE room_id = ?",
                                      room_id)
        return rows[0][0] if rows else None

    async def get_room_media(self, room_id: str) -> list[str]:
        """``mxc://`` URIs referenced by the room's stored events (url / info.thumbnail_url)."""
        rows = await self._db.execute(
            "admin_room_media",
            "SELECT j.json FROM event_json j JOIN events e ON e.event_id = j.event_id"
            " WHERE e.room_id = ? AND j.json LIKE ?", room_id, "%mxc://%")
        uris: list[str] = []
        for (raw,) in rows:
            content = json.loads(raw).get("content", {})
            if not isinstance(content, dict):
                continue
            candidates = [content.get("url")]
            info = content.get("info")
            if isinstance(info, dict):
                candidates.append(info.get("thumbnail_url"))
            for uri in candidates:
                if isinstance(uri, str) and uri.startswith("mxc://") and uri not in uris:
                    uris.append(uri)
        return uris

    # -- purging -------------------------------------------------------------------------

    async def next_room_event_batch(self, room_id: str, limit: int) -> list[str]:
        rows = await self._db.execute("purge_room_batch", "SELECT event_id FROM events WHERE room_id = ? LIMIT ?",
                                      room_id, limit)
        return [r[0] for r in rows]

    async def delete_events(self, event_ids: Sequence[str]) -> None:
        """Delete events and their per-event rows (one transaction)."""
        def _txn(txn: Cursor) -> None:
            clause, args = in_list_clause(txn.engine, "event_id", list(event_ids))
            # Their notification rows (keyed by user and position, so found by room and position).
            txn.execute(f"SELECT room_id, stream_ordering FROM events WHERE {clause}", args)
            positions: dict[str, list[int]] = {}
            for room_id, stream_ordering in txn.fetchall():
                positions.setdefault(room_id, []).append(int(stream_ordering))
            for room_id, orderings in positions.items():
                so_clause, so_args = in_list_clause(txn.engine, "stream_ordering", orderings)
                txn.execute(f"DELETE FROM event_push_actions WHERE room_id = ? AND {so_clause}", [room_id, *so_args])
            for table in (*_EVENT_TABLES, "events"):
                txn.execute(f"DELETE FROM {table} WHERE {clause}", args)

        await self._db.run_interaction("purge_events", _txn)

    async def delete_state_group_batch(self, room_id: str, limit: int) -> int:
        """Delete up to ``limit`` of a room's state groups (a deleted room only); how many went."""
        def _txn(txn: Cursor) -> int:
            txn.execute("SELECT id FROM state_groups WHERE room_id = ? LIMIT ?", (room_id, limit))
            ids = [int(r[0]) for r in txn.fetchall()]
            if not ids:
                return 0
            clause, args = in_list_clause(txn.engine, "state_group", ids)
            txn.execute(f"DELETE FROM state_groups_state WHERE {clause}", args)
            txn.execute(f"DELETE FROM event_to_state_groups WHERE {clause}", args)
            prev_clause, prev_args = in_list_clause(txn.engine, "prev_state_group", ids)
            txn.execute(f"DELETE FROM state_group_edges WHERE {clause} OR {prev_clause}", args + prev_args)
            id_clause, id_args = in_list_clause(txn.engine, "id", ids)
            txn.execute(f"DELETE FROM state_groups WHERE {id_clause}", id_args)
            return len(ids)

        return await self._db.run_interaction("purge_state_groups", _txn)

    async def delete_room_row(self, room_id: str) -> None:
        """Forget that the room exists (first step of a deletion: joins now fail)."""
        await self._db.execute("delete_room_row", "DELETE FROM rooms WHERE room_id = ?", room_id)

    async def delete_room_rows(self, room_id: str) -> None:
        """The last step of deleting a room: its current state, extremities, aliases and room row."""
        def _txn(txn: Cursor) -> None:
            for table in _ROOM_TABLES:
                txn.execute(f"DELETE FROM {table} WHERE room_id = ?", (room_id,))

        await self._db.run_interaction("purge_room_rows", _txn)

    async def history_purge_batch(self, room_id: str, *, max_depth: int, max_stream: Optional[int],
                                  before_ts: Optional[int], local_suffix: Optional[str], limit: int) -> list[str]:
        """Up to ``limit`` purgeable events: non-state timeline events below the purge point.

        State events (referenced by state groups and auth chains) and the room's
        forward extremities are never purged; ``local_suffix`` (':server') keeps
        events sent by local users.
        """
        sql_text = (
            "SELECT e.event_id FROM events e WHERE e.room_id = ? AND e.state_key IS NULL"
            " AND e.topological_ordering <= ?"
            " AND NOT EXISTS (SELECT 1 FROM event_forward_extremities f WHERE f.event_id = e.event_id)"
        )
        args: list[Any] = [room_id, max_depth]
        if max_stream is not None:
            sql_text += " AND (e.topological_ordering < ? OR e.stream_ordering < ?)"
            args += [max_depth, max_stream]
        if before_ts is not None:
            sql_text += " AND e.origin_server_ts < ?"
            args.append(before_ts)
        if local_suffix is not None:
            sql_text += " AND e.sender NOT LIKE ?"
            args.append("%" + local_suffix)
        rows = await self._db.execute("history_purge_batch", sql_text + " LIMIT ?", *args, limit)
        return [r[0] for r in rows]

    # -- admin jobs ----------------------------------------------------------------------

    async def create_job(self, job_id: str, kind: str, room_id: Optional[str], params: JsonDict,
                         status: str) -> None:
        now = self._clock.time_msec()
        await self._db.simple_insert("admin_jobs", {
            "job_id": job_id, "kind": kind, "room_id": room_id, "params": json.dumps(params), "status": status,
            "progress": "{}", "error": None, "created_ts": now, "updated_ts": now,
        }, desc="create_admin_job")

    async def update_job(self, job_id: str, *, status: str, progress: JsonDict, error: Optional[str] = None) -> None:
        await self._db.execute(
            "update_admin_job", "UPDATE admin_jobs SET status = ?, progress = ?, error = ?, updated_ts = ?"
            " WHERE job_id = ?", status, json.dumps(progress), error, self._clock.time_msec(), job_id)

    async def get_job(self, job_id: str) -> Optional[AdminJob]:
        rows = await self._db.execute("get_admin_job", f"SELECT {_JOB_COLUMNS} FROM admin_jobs WHERE job_id = ?",
                                      job_id)
        return _job(rows[0]) if rows else None

    async def get_jobs_for_room(self, room_id: str, kind: str) -> list[AdminJob]:
        rows = await self._db.execute(
            "get_room_admin_jobs",
            f"SELECT {_JOB_COLUMNS} FROM admin_jobs WHERE room_id = ? AND kind = ? ORDER BY created_ts",
            room_id, kind)
        return [_job(r) for r in rows]

    async def get_unfinished_jobs(self) -> list[AdminJob]:
        rows = await self._db.execute(
            "get_unfinished_admin_jobs",
            f"SELECT {_JOB_COLUMNS} FROM admin_jobs WHERE status NOT IN ('complete', 'failed') ORDER BY created_ts")
        return [_job(r) for r in rows]

    # -- reports -------------------------------------------------------------------------

    async def list_reports(self, *, start: int, limit: int, direction: str, user_id: Optional[str],
                           room_id: Optional[str]) -> tuple[list[Any], int]:
        where: list[str] = []
        args: list[Any] = []
        if user_id is not None:
            where.append("reporter LIKE ?")
            args.append(f"%{user_id}%")
        if room_id is not None:
            where.append("room_id LIKE ?")
            args.append(f"%{room_id}%")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sort = "ASC" if direction == "f" else "DESC"

        def _txn(txn: Cursor) -> tuple[list[Any], int]:
            txn.execute(f"SELECT COUNT(*) FROM content_reports {clause}", args)
            row = txn.fetchone()
            txn.execute(
                "SELECT id, received_ts, reporter, room_id, event_id, target_user_id, reason, score"
                f" FROM content_reports {clause} ORDER BY received_ts {sort}, id {sort} LIMIT ? OFFSET ?",
                [*args, limit, start])
            return txn.fetchall(), int(row[0]) if row else 0

        return await self._db.run_interaction("admin_list_reports", _txn)

    async def get_report(self, report_id: int) -> Optional[Sequence[Any]]:
        rows = await self._db.execute(
            "admin_get_report", "SELECT id, received_ts, reporter, room_id, event_id, target_user_id, reason, score"
            " FROM content_reports WHERE id = ?", report_id)
        return rows[0] if rows else None

    async def delete_report(self, report_id: int) -> bool:
        return await self._db.simple_delete("content_reports", {"id": report_id}, desc="admin_delete_report") > 0

    # -- media ---------------------------------------------------------------------------

    async def quarantine_media(self, server_name: str, media_ids: Sequence[str], by: str) -> int:
        """Quarantine media (skipping protected ones); how many were newly quarantined."""
        def _txn(txn: Cursor) -> int:
            count = 0
            for media_id in media_ids:
                txn.execute("SELECT 1 FROM media_protected WHERE server_name = ? AND media_id = ?",
                            (server_name, media_id))
                if txn.fetchone() is not None:
                    continue
                txn.execute("INSERT INTO media_quarantine (server_name, media_id, quarantined_by) VALUES (?, ?, ?)"
                            " ON CONFLICT (server_name, media_id) DO NOTHING", (server_name, media_id, by))
                count += max(txn.rowcount, 0)
            return count

        return await self._db.run_interaction("quarantine_media", _txn)

    async def unquarantine_media(self, server_name: str, media_id: str) -> None:
        await self._db.simple_delete("media_quarantine", {"server_name": server_name, "media_id": media_id},
                                     desc="unquarantine_media")

    async def is_quarantined(self, server_name: str, media_id: str) -> bool:
        rows = await self._db.execute("is_media_quarantined",
                                      "SELECT 1 FROM media_quarantine WHERE server_name = ? AND media_id = ?",
                                      server_name, media_id)
        return bool(rows)

    async def set_protected(self, server_name: str, media_id: str, protected: bool) -> None:
        if protected:
            await self._db.simple_upsert("media_protected", {"server_name": server_name, "media_id": media_id}, {},
                                         desc="protect_media")
        else:
            await self._db.simple_delete("media_protected", {"server_name": server_name, "media_id": media_id},
                                         desc="unprotect_media")

    async def local_media_ids_for_user(self, user_id: str) -> list[str]:
        return [r[0] for r in await self._db.execute(
            "user_media_ids", "SELECT media_id FROM local_media WHERE user_id = ?", user_id)]

    # -- server notices ------------------------------------------------------------------

    async def get_notice_room(self, user_id: str) -> Optional[str]:
        rows = await self._db.execute("get_notice_room", "SELECT room_id FROM server_notice_rooms WHERE user_id = ?",
                                      user_id)
        return rows[0][0] if rows else None

    async def set_notice_room(self, user_id: str, room_id: str) -> None:
        await self._db.simple_upsert("server_notice_rooms", {"user_id": user_id}, {"room_id": room_id},
                                     desc="set_notice_room")

    # -- federation destinations (the federation sender's tables) -------------------------

    async def list_destinations(self, *, start: int, limit: int, order_by: str, direction: str,
                                search: Optional[str]) -> tuple[list[Sequence[Any]], int]:
        """A page of ``federation_destinations`` rows (``DESTINATION_COLUMNS``) and their count."""
        if order_by not in DESTINATION_ORDER_COLUMNS:
            raise ValueError(f"cannot order destinations by {order_by!r}")
        where, args = "", []
        if search:
            where, args = " WHERE LOWER(destination) LIKE ?", [f"%{search.lower()}%"]
        order = "DESC" if direction == "b" else "ASC"
        # NULLs (never failed / never succeeded) sort as the smallest value on both engines.
        key = "destination" if order_by == "destination" else f"COALESCE({order_by}, -1)"

        def _txn(txn: Cursor) -> tuple[list[Sequence[Any]], int]:
            txn.execute(f"SELECT COUNT(*) FROM federation_destinations{where}", args)
            count = txn.fetchone()
            total = int(count[0]) if count else 0
            txn.execute(
                f"SELECT {DESTINATION_COLUMNS} FROM federation_destinations{where}"
                f" ORDER BY {key} {order}, destination {order} LIMIT ? OFFSET ?", [*args, limit, start])
            return list(txn.fetchall()), total

        return await self._db.run_interaction("admin_list_destinations", _txn)

    async def get_destination(self, destination: str) -> Optional[Sequence[Any]]:
        rows = await self._db.execute(
            "admin_get_destination",
            f"SELECT {DESTINATION_COLUMNS} FROM federation_destinations WHERE destination = ?", destination)
        return rows[0] if rows else None

    async def reset_destination_retry(self, destination: str) -> bool:
        """Clear a destination's backoff; False if the destination is unknown."""
        def _txn(txn: Cursor) -> bool:
            txn.execute("UPDATE federation_destinations SET retry_last_ts = 0, retry_interval = 0, failure_ts = NULL"
                        " WHERE destination = ?", (destination,))
            return txn.rowcount > 0

        return await self._db.run_interaction("admin_reset_destination_retry", _txn)

    async def destination_rooms(self, destination: str, *, start: int, limit: int,
                                direction: str) -> tuple[list[tuple[str, int]], int]:
        """A page of ``(room_id, stream_ordering)`` of the rooms we send ``destination`` events of."""
        order = "DESC" if direction == "b" else "ASC"

        def _txn(txn: Cursor) -> tuple[list[tuple[str, int]], int]:
            txn.execute("SELECT COUNT(*) FROM federation_destination_rooms WHERE destination = ?", (destination,))
            count = txn.fetchone()
            total = int(count[0]) if count else 0
            txn.execute("SELECT room_id, stream_ordering FROM federation_destination_rooms WHERE destination = ?"
                        f" ORDER BY room_id {order} LIMIT ? OFFSET ?", (destination, limit, start))
            return [(r[0], int(r[1])) for r in txn.fetchall()], total

        return await self._db.run_interaction("admin_destination_rooms", _txn)

    async def count_current_state(self) -> tuple[int, int]:
        """``(rooms with current state, current state events)`` over the whole server."""
        rows = await self._db.execute("count_current_state",
                                      "SELECT COUNT(DISTINCT room_id), COUNT(*) FROM current_state_events")
        return (int(rows[0][0] or 0), int(rows[0][1] or 0)) if rows else (0, 0)
