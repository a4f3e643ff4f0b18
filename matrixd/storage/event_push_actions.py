"""Per-user push actions of received events, and the unread counts derived from them.

A row exists for each (local user, event) whose push rules notified or
highlighted.  The unread count of a room (thread) is the number of rows
after the user's latest read receipt in it: an unthreaded receipt covers
every thread, a threaded one (``main`` or a thread root) only its thread;
``m.read`` and ``m.read.private`` both count.  Nothing is deleted when
receipts move, so the counts are exact for any receipt position.
"""

from __future__ import annotations

import json
from typing import Collection, Optional, Sequence

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, in_list_clause
from matrixd.util.clock import Clock


@attrs.frozen(slots=True)
class PushActionRow:
    user_id: str
    room_id: str
    thread_id: str
    stream_ordering: int
    event_id: str
    actions_json: str
    notify: bool
    highlight: bool
    ts: int


@attrs.frozen(slots=True)
class NotificationRow:
    room_id: str
    event_id: str
    stream_ordering: int
    actions: list[object]
    highlight: bool
    ts: int
    read: bool


@attrs.frozen(slots=True)
class UnreadCounts:
    notifications: int
    highlights: int


# The stream ordering of the user's latest read receipt covering the row's (room, thread).
_RECEIPT_POS = (
    "COALESCE((SELECT MAX(r.event_stream_ordering) FROM receipts r"
    " WHERE r.user_id = a.user_id AND r.room_id = a.room_id"
    " AND r.receipt_type IN ('m.read', 'm.read.private')"
    " AND (r.thread_id = '' OR r.thread_id = a.thread_id)), 0)"
)


class EventPushActionsStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add_push_actions(self, rows: Sequence[PushActionRow]) -> None:
        """Record the actions of one event for its recipients (idempotent per user and event)."""
        if not rows:
            return

        def _txn(txn: Cursor) -> None:
            txn.execute_batch(
                "INSERT INTO event_push_actions (user_id, room_id, thread_id, stream_ordering, event_id, actions,"
                " notif, highlight, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, stream_ordering) DO NOTHING",
                [
                    (r.user_id, r.room_id, r.thread_id, r.stream_ordering, r.event_id, r.actions_json,
                     int(r.notify), int(r.highlight), r.ts)
                    for r in rows
                ],
            )

        await self._db.run_interaction("add_push_actions", _txn)

    async def get_unread_counts(
        self, user_id: str, room_ids: Collection[str], upto: int
    ) -> dict[str, dict[str, UnreadCounts]]:
        """``{room_id: {thread_id: counts}}`` of unread rows up to stream ordering ``upto``."""
        rooms = list(room_ids)

        def _txn(txn: Cursor) -> dict[str, dict[str, UnreadCounts]]:
            out: dict[str, dict[str, UnreadCounts]] = {}
            for chunk in batch_iter(rooms, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "a.room_id", chunk)
                txn.execute(
                    "SELECT a.room_id, a.thread_id, SUM(a.notif), SUM(a.highlight) FROM event_push_actions a"
                    f" WHERE a.user_id = ? AND {clause} AND a.stream_ordering <= ?"
                    f" AND a.stream_ordering > {_RECEIPT_POS} GROUP BY a.room_id, a.thread_id",
                    [user_id, *args, upto],
                )
                for room_id, thread_id, notifs, highlights in txn:
                    out.setdefault(room_id, {})[thread_id] = UnreadCounts(int(notifs or 0), int(highlights or 0))
            return out

        if not rooms:
            return {}
        return await self._db.run_interaction("get_unread_counts", _txn)

    async def get_badge_count(self, user_id: str) -> int:
        """Unread notifying events across all the user's rooms (a push's ``counts.unread``)."""
        rows = await self._db.execute(
            "get_badge_count",
            f"SELECT COUNT(*) FROM event_push_actions a WHERE a.user_id = ? AND a.notif = 1"
            f" AND a.stream_ordering > {_RECEIPT_POS}",
            user_id,
        )
        return int(rows[0][0]) if rows else 0

    async def get_notifications(
        self, user_id: str, before: Optional[int], limit: int, only_highlight: bool
    ) -> list[NotificationRow]:
        """The user's notifications newest first, below stream ordering ``before`` (None: the newest)."""
        where = ["a.user_id = ?", "a.notif = 1"]
        args: list[object] = [user_id]
        if before is not None:
            where.append("a.stream_ordering < ?")
            args.append(before)
        if only_highlight:
            where.append("a.highlight = 1")
        rows = await self._db.execute(
            "get_notifications",
            "SELECT a.room_id, a.event_id, a.stream_ordering, a.actions, a.highlight, a.ts,"
            f" CASE WHEN a.stream_ordering <= {_RECEIPT_POS} THEN 1 ELSE 0 END"
            f" FROM event_push_actions a WHERE {' AND '.join(where)} ORDER BY a.stream_ordering DESC LIMIT ?",
            *args,
            limit,
        )
        return [
            NotificationRow(r[0], r[1], int(r[2]), json.loads(r[3]), bool(r[4]), int(r[5]), bool(r[6]))
            for r in rows
        ]

    async def delete_for_user(self, user_id: str) -> None:
        """Forget a deactivated user's notifications."""
        await self._db.simple_delete("event_push_actions", {"user_id": user_id}, desc="delete_push_actions")
