"""Push actions of received events, and the unread counts derived from them.

Most members of a big room get the same actions for an event, so those are
stored once, as the event's *broadcast* row (``user_id = ''``), valid for
every local member joined when it arrived; a user whose actions differ has a
row of their own, which replaces the broadcast row for them (a row with
neither ``notif`` nor ``highlight`` is such an exception).  Joins are kept in
``push_room_joins``: the broadcast rows before a user's join are not theirs.

The unread count of a room (thread) is the number of notifying rows after
the user's latest read receipt in it: an unthreaded receipt covers every
thread, a threaded one (``main`` or a thread root) only its thread;
``m.read`` and ``m.read.private`` both count.
"""

from __future__ import annotations

import json
from typing import Any, Collection, Optional, Sequence

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, in_list_clause
from matrixd.util.clock import Clock

#: The ``user_id`` of an event's broadcast row.
BROADCAST = ""


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
class JoinChange:
    """A local user's membership event: ``joined`` starts a stretch (if none is open), else ends it."""

    user_id: str
    room_id: str
    joined: bool
    stream_ordering: int


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


# The latest read receipt of the user (the ?) covering the row's (room, thread).
_RECEIPT_POS = (
    "COALESCE((SELECT MAX(r.event_stream_ordering) FROM receipts r"
    " WHERE r.user_id = ? AND r.room_id = a.room_id"
    " AND r.receipt_type IN ('m.read', 'm.read.private')"
    " AND (r.thread_id = '' OR r.thread_id = a.thread_id)), 0)"
)
# Broadcast rows that are the user's (two ? : the user, the user).
_BROADCAST_FOR_USER = (
    " JOIN push_room_joins j ON j.user_id = ? AND j.room_id = a.room_id AND a.stream_ordering > j.joined_at"
    " WHERE a.user_id = '' AND NOT EXISTS (SELECT 1 FROM event_push_actions b"
    " WHERE b.user_id = ? AND b.stream_ordering = a.stream_ordering)"
)


class EventPushActionsStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add_push_actions(self, rows: Sequence[PushActionRow], join: Optional[JoinChange] = None) -> None:
        """Record one event's rows (idempotent) and, for a local member event, the join bookkeeping."""
        if not rows and join is None:
            return
        await self._db.run_interaction("add_push_actions", self.add_push_actions_txn, rows, join)

    @staticmethod
    def add_push_actions_txn(txn: Cursor, rows: Sequence[PushActionRow], join: Optional[JoinChange] = None) -> None:
        """:meth:`add_push_actions` inside a caller's transaction (the event's own, when written with it)."""
        if join is not None:
            if join.joined:
                txn.execute(
                    "INSERT INTO push_room_joins (user_id, room_id, joined_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (user_id, room_id) DO NOTHING",
                    (join.user_id, join.room_id, join.stream_ordering),
                )
            else:
                txn.execute(
                    "DELETE FROM push_room_joins WHERE user_id = ? AND room_id = ?", (join.user_id, join.room_id)
                )
        if rows:
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

    async def get_unread_counts(
        self, user_id: str, room_ids: Collection[str], upto: int
    ) -> dict[str, dict[str, UnreadCounts]]:
        """``{room_id: {thread_id: counts}}`` of unread rows up to stream ordering ``upto``."""
        rooms = list(room_ids)

        def _txn(txn: Cursor) -> dict[str, dict[str, UnreadCounts]]:
            totals: dict[tuple[str, str], list[int]] = {}
            for chunk in batch_iter(rooms, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "a.room_id", chunk)
                own = (
                    "SELECT a.room_id, a.thread_id, SUM(a.notif), SUM(a.highlight) FROM event_push_actions a"
                    f" WHERE a.user_id = ? AND {clause} AND a.stream_ordering <= ?"
                    f" AND a.stream_ordering > {_RECEIPT_POS} GROUP BY a.room_id, a.thread_id"
                )
                broadcast = (
                    "SELECT a.room_id, a.thread_id, SUM(a.notif), SUM(a.highlight) FROM event_push_actions a"
                    f" {_BROADCAST_FOR_USER} AND {clause} AND a.stream_ordering <= ?"
                    f" AND a.stream_ordering > {_RECEIPT_POS} GROUP BY a.room_id, a.thread_id"
                )
                # One round trip for both kinds of row (a woken /sync asks this each time).
                txn.execute(f"{own} UNION ALL {broadcast}",
                            [user_id, *args, upto, user_id, user_id, user_id, *args, upto, user_id])
                for room_id, thread_id, notifs, highlights in txn:
                    t = totals.setdefault((room_id, thread_id), [0, 0])
                    t[0] += int(notifs or 0)
                    t[1] += int(highlights or 0)
            out: dict[str, dict[str, UnreadCounts]] = {}
            for (room_id, thread_id), (n, h) in totals.items():
                out.setdefault(room_id, {})[thread_id] = UnreadCounts(n, h)
            return out

        if not rooms:
            return {}
        return await self._db.run_interaction("get_unread_counts", _txn)

    async def get_badge_count(self, user_id: str) -> int:
        """Unread notifying events across all the user's rooms (a push's ``counts.unread``)."""

        def _txn(txn: Cursor) -> int:
            total = 0
            txn.execute(
                f"SELECT COUNT(*) FROM event_push_actions a WHERE a.user_id = ? AND a.notif = 1"
                f" AND a.stream_ordering > {_RECEIPT_POS}",
                (user_id, user_id),
            )
            row = txn.fetchone()
            total += int(row[0]) if row else 0
            txn.execute(
                f"SELECT COUNT(*) FROM event_push_actions a {_BROADCAST_FOR_USER} AND a.notif = 1"
                f" AND a.stream_ordering > {_RECEIPT_POS}",
                (user_id, user_id, user_id),
            )
            row = txn.fetchone()
            return total + (int(row[0]) if row else 0)

        return await self._db.run_interaction("get_badge_count", _txn)

    async def get_notifications(
        self, user_id: str, before: Optional[int], limit: int, only_highlight: bool
    ) -> list[NotificationRow]:
        """The user's notifications newest first, below stream ordering ``before`` (None: the newest)."""
        extra = ""
        extra_args: list[Any] = []
        if before is not None:
            extra += " AND a.stream_ordering < ?"
            extra_args.append(before)
        if only_highlight:
            extra += " AND a.highlight = 1"
        columns = (
            "a.room_id, a.event_id, a.stream_ordering AS so, a.actions, a.highlight, a.ts,"
            f" CASE WHEN a.stream_ordering <= {_RECEIPT_POS} THEN 1 ELSE 0 END"
        )
        sql_text = (
            f"SELECT {columns} FROM event_push_actions a WHERE a.user_id = ? AND a.notif = 1{extra}"
            f" UNION ALL SELECT {columns} FROM event_push_actions a {_BROADCAST_FOR_USER} AND a.notif = 1{extra}"
            " ORDER BY so DESC LIMIT ?"
        )
        rows = await self._db.execute(
            "get_notifications", sql_text,
            user_id, user_id, *extra_args, user_id, user_id, user_id, *extra_args, limit,
        )
        return [
            NotificationRow(r[0], r[1], int(r[2]), json.loads(r[3]), bool(r[4]), int(r[5]), bool(r[6]))
            for r in rows
        ]

    async def delete_for_user(self, user_id: str) -> None:
        """Forget a deactivated user's own rows and joins."""

        def _txn(txn: Cursor) -> None:
            txn.execute("DELETE FROM event_push_actions WHERE user_id = ?", (user_id,))
            txn.execute("DELETE FROM push_room_joins WHERE user_id = ?", (user_id,))

        if user_id:
            await self._db.run_interaction("delete_push_actions", _txn)
