"""The to_device stream: per-device inboxes of local users and the outbox of
messages for remote servers, numbered by one stream.

Inbox rows live until the device acknowledges them (a later sync token), so
the table's maximum id can shrink; ``to_device_stream_max`` keeps the highest
id ever written so allocation resumes above every id a client may hold.
"""

from __future__ import annotations

import json
from typing import Mapping, Sequence

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.e2e_keys import canonical
from matrixd.storage.sql import delete_older_than_txn
from matrixd.storage.streams import StreamIdGenerator
from matrixd.types import JsonDict
from matrixd.util.clock import Clock


async def create_to_device_id_generator(db: Database) -> StreamIdGenerator:
    return await StreamIdGenerator.create(
        db, "to_device_stream_max", "stream_id",
        extra_tables=[("device_inbox", "stream_id"), ("device_federation_outbox", "stream_id")],
    )


@attrs.frozen(slots=True)
class OutboxEntry:
    stream_id: int
    destination: str
    edu: JsonDict


class ToDeviceStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add_messages(
        self,
        sender_user_id: str,
        sender_device_id: str,
        txn_id: str,
        stream_id: int,
        local: Sequence[tuple[str, str, JsonDict]],
        remote: Mapping[str, JsonDict],
    ) -> bool:
        """Queue one request's messages: ``local`` as ``(user, device, event)`` inbox rows,
        ``remote`` as ``{destination: edu_content}`` outbox rows.

        Returns False, storing nothing, if this device already used ``txn_id``.
        """

        def _txn(txn: Cursor) -> bool:
            txn.execute(
                "INSERT INTO to_device_txn_ids (user_id, device_id, txn_id, inserted_ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id, device_id, txn_id) DO NOTHING",
                (sender_user_id, sender_device_id, txn_id, self._clock.time_msec()),
            )
            if txn.rowcount != 1:
                return False
            txn.execute_batch(
                "INSERT INTO device_inbox (stream_id, user_id, device_id, message_json) VALUES (?, ?, ?, ?)",
                [(stream_id, u, d, canonical(ev)) for u, d, ev in local],
            )
            txn.execute_batch(
                "INSERT INTO device_federation_outbox (stream_id, destination, edu_json, queued_ts)"
                " VALUES (?, ?, ?, ?)",
                [(stream_id, dest, canonical(edu), self._clock.time_msec()) for dest, edu in sorted(remote.items())],
            )
            txn.execute("UPDATE to_device_stream_max SET stream_id = ? WHERE stream_id < ?", (stream_id, stream_id))
            return True

        return await self._db.run_interaction("add_to_device_messages", _txn)

    async def get_messages(
        self, user_id: str, device_id: str, from_id: int, to_id: int, limit: int
    ) -> list[tuple[int, JsonDict]]:
        """Inbox rows ``from_id < stream_id <= to_id`` of one device, oldest first."""
        rows = await self._db.execute(
            "get_to_device_messages",
            "SELECT stream_id, message_json FROM device_inbox WHERE user_id = ? AND device_id = ?"
            " AND stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?",
            user_id, device_id, from_id, to_id, limit,
        )
        return [(int(r[0]), json.loads(r[1])) for r in rows]

    async def get_inbox_messages(self, from_id: int, to_id: int) -> list[tuple[int, str, str, JsonDict]]:
        """``(stream_id, user_id, device_id, message)`` of every inbox row in ``(from_id, to_id]`` still held,
        oldest first (application services receiving their users' to-device messages); callers keep the
        range short (a stream id is one send request)."""
        rows = await self._db.execute(
            "get_to_device_inbox_messages",
            "SELECT stream_id, user_id, device_id, message_json FROM device_inbox"
            " WHERE stream_id > ? AND stream_id <= ? ORDER BY stream_id, user_id, device_id",
            from_id, to_id,
        )
        return [(int(r[0]), r[1], r[2], json.loads(r[3])) for r in rows]

    async def get_inbox_rows(self, from_id: int, to_id: int, limit: int) -> list[tuple[int, str, str]]:
        """``(stream_id, user_id, device_id)`` of inbox rows in ``(from_id, to_id]`` still held (replication)."""
        rows = await self._db.execute(
            "get_to_device_inbox_rows",
            "SELECT stream_id, user_id, device_id FROM device_inbox WHERE stream_id > ? AND stream_id <= ?"
            " ORDER BY stream_id LIMIT ?",
            from_id, to_id, limit,
        )
        return [(int(r[0]), r[1], r[2]) for r in rows]

    async def delete_messages(self, user_id: str, device_id: str, up_to: int) -> int:
        """Delete a device's messages with ``stream_id <= up_to`` (acknowledged)."""

        def _txn(txn: Cursor) -> int:
            txn.execute(
                "DELETE FROM device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?",
                (user_id, device_id, up_to),
            )
            return txn.rowcount

        return await self._db.run_interaction("delete_to_device_messages", _txn)

    async def delete_inboxes(self, user_id: str, device_ids: Sequence[str]) -> None:
        """Drop the inboxes of deleted devices."""
        def _txn(txn: Cursor) -> None:
            txn.execute_batch("DELETE FROM device_inbox WHERE user_id = ? AND device_id = ?",
                              [(user_id, d) for d in device_ids])

        await self._db.run_interaction("delete_to_device_inboxes", _txn)

    # -- the federation sender's side -------------------------------------------------

    async def get_outbox_destinations(self) -> list[str]:
        rows = await self._db.execute(
            "get_to_device_outbox_destinations", "SELECT DISTINCT destination FROM device_federation_outbox"
        )
        return sorted(r[0] for r in rows)

    async def get_outbox(self, destination: str, from_id: int, to_id: int, limit: int) -> list[OutboxEntry]:
        """Queued EDUs for ``destination`` with ``from_id < stream_id <= to_id``, oldest first."""
        rows = await self._db.execute(
            "get_to_device_outbox",
            "SELECT stream_id, destination, edu_json FROM device_federation_outbox WHERE destination = ?"
            " AND stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?",
            destination, from_id, to_id, limit,
        )
        return [OutboxEntry(int(r[0]), r[1], json.loads(r[2])) for r in rows]

    async def delete_outbox(self, destination: str, up_to: int) -> int:
        """Forget EDUs the destination has accepted."""
        def _txn(txn: Cursor) -> int:
            txn.execute("DELETE FROM device_federation_outbox WHERE destination = ? AND stream_id <= ?",
                        (destination, up_to))
            return txn.rowcount

        return await self._db.run_interaction("delete_to_device_outbox", _txn)

    async def expire_txn_ids(self, before_ts: int, limit: int) -> int:
        """Forget at most ``limit`` of the transaction ids stored before ``before_ts`` (oldest first)."""
        def _txn(txn: Cursor) -> int:
            return delete_older_than_txn(txn, "to_device_txn_ids", "inserted_ts",
                                         ("user_id", "device_id", "txn_id"), before_ts, limit)

        return await self._db.run_interaction("expire_to_device_txn_ids", _txn)
