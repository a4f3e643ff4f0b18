"""The device_lists stream, and the room-sharing facts device list tracking needs.

A row is written whenever a user's device list, device keys or cross-signing
keys change (by the writers of those tables, in the same transaction, with
:func:`add_device_list_changes_txn`).  Readers ask which users changed in a
window of stream ids and which users share rooms with a given user, reading
the room core's ``current_state_events`` and ``current_state_delta_stream``.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, in_list_clause
from matrixd.storage.streams import StreamIdGenerator
from matrixd.util.clock import Clock


async def create_device_list_id_generator(db: Database) -> StreamIdGenerator:
    return await StreamIdGenerator.create(db, "device_lists_stream", "stream_id")


def add_device_list_changes_txn(
    txn: Cursor, stream_id: int, user_id: str, device_ids: Iterable[Optional[str]],
    visible_to: Optional[str] = None,
) -> None:
    """Record that ``user_id``'s devices (None: cross-signing keys) changed at ``stream_id``."""
    rows = [(stream_id, user_id, d, visible_to) for d in sorted(set(device_ids), key=lambda d: d or "")]
    txn.execute_batch(
        "INSERT INTO device_lists_stream (stream_id, user_id, device_id, visible_to) VALUES (?, ?, ?, ?)", rows
    )


@attrs.frozen(slots=True)
class MembershipChange:
    """A change of ``user_id``'s membership of ``room_id`` in a window of the events stream."""

    room_id: str
    user_id: str
    joined: bool  # now join, was not
    left: bool  # was join, now not


@attrs.frozen(slots=True)
class DeviceListRow:
    stream_id: int
    user_id: str
    device_id: Optional[str]
    visible_to: Optional[str]


class DeviceListStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add_changes(self, stream_id: int, user_id: str, device_ids: Iterable[Optional[str]],
                          visible_to: Optional[str] = None) -> None:
        await self._db.run_interaction(
            "add_device_list_changes", add_device_list_changes_txn, stream_id, user_id, list(device_ids), visible_to
        )

    async def get_changed_users(self, from_id: int, to_id: int, viewer: str) -> set[str]:
        """Users with a change ``from_id < stream_id <= to_id`` that ``viewer`` may see."""
        rows = await self._db.execute(
            "get_changed_device_list_users",
            "SELECT DISTINCT user_id FROM device_lists_stream WHERE stream_id > ? AND stream_id <= ?"
            " AND (visible_to IS NULL OR visible_to = ?)",
            from_id, to_id, viewer,
        )
        return {r[0] for r in rows}

    async def get_rows(self, from_id: int, to_id: int, limit: int = 1000) -> list[DeviceListRow]:
        """Stream rows in order (for replication and the federation sender's catch-up)."""
        rows = await self._db.execute(
            "get_device_list_rows",
            "SELECT stream_id, user_id, device_id, visible_to FROM device_lists_stream"
            " WHERE stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?",
            from_id, to_id, limit,
        )
        return [DeviceListRow(int(r[0]), r[1], r[2], r[3]) for r in rows]

    async def get_users_sharing_a_room(self, user_id: str) -> set[str]:
        """Users joined to any room ``user_id`` is joined to (``user_id`` included if joined anywhere)."""
        rows = await self._db.execute(
            "get_users_sharing_a_room",
            "SELECT DISTINCT b.state_key FROM current_state_events a"
            " JOIN current_state_events b ON b.room_id = a.room_id"
            " WHERE a.type = 'm.room.member' AND a.state_key = ? AND a.membership = 'join'"
            " AND b.type = 'm.room.member' AND b.membership = 'join'",
            user_id,
        )
        return {r[0] for r in rows}

    async def get_joined_members(self, room_ids: Sequence[str]) -> dict[str, set[str]]:
        """Current joined members of each room."""

        def _txn(txn: Cursor) -> dict[str, set[str]]:
            out: dict[str, set[str]] = {r: set() for r in room_ids}
            for chunk in batch_iter(room_ids, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "room_id", chunk)
                txn.execute(
                    "SELECT room_id, state_key FROM current_state_events"
                    f" WHERE type = 'm.room.member' AND membership = 'join' AND {clause}",
                    args,
                )
                for room_id, member in txn:
                    out[room_id].add(member)
            return out

        return await self._db.run_interaction("get_joined_members_of_rooms", _txn)

    async def get_membership_changes(
        self, user_id: str, joined_rooms: Sequence[str], from_events: int, to_events: int
    ) -> list[MembershipChange]:
        """Membership changes ``from_events < stream <= to_events`` that concern ``user_id``.

        That is: changes of ``user_id``'s own memberships anywhere, and changes
        of anyone's membership in ``joined_rooms`` or in a room whose membership
        of ``user_id`` changed in the window. Read from the current state delta
        rows, so each change is one the room's current state went through.
        """

        def _txn(txn: Cursor) -> list[MembershipChange]:
            select = (
                "SELECT d.room_id, d.state_key, n.membership, o.membership FROM current_state_delta_stream d"
                " LEFT JOIN room_memberships n ON n.event_id = d.event_id"
                " LEFT JOIN room_memberships o ON o.event_id = d.prev_event_id"
                " WHERE d.stream_id > ? AND d.stream_id <= ? AND d.type = 'm.room.member'"
            )
            txn.execute(select + " AND d.state_key = ? ORDER BY d.stream_id", (from_events, to_events, user_id))
            own = txn.fetchall()
            rooms = sorted(set(joined_rooms) | {r[0] for r in own})
            rows: list[tuple[object, ...]] = []
            for chunk in batch_iter(rooms, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "d.room_id", chunk)
                txn.execute(select + f" AND {clause} ORDER BY d.stream_id", [from_events, to_events, *args])
                rows.extend(txn.fetchall())
            return [
                MembershipChange(str(room), str(member), new == "join" and old != "join",
                                 old == "join" and new != "join")
                for room, member, new, old in rows
            ]

        return await self._db.run_interaction("get_membership_changes", _txn)
