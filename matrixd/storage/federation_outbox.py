"""The ``federation_outbox`` table: what the master hands to a ``federation_sender`` worker.

When outbound federation runs on a worker, code on the master that asks the
sender for something explicitly (``FederationSender.send_pdu`` / ``send_edu``,
e.g. a remote join we served, to be passed on to the room's other servers)
writes a row here instead; the ``federation_outbox`` replication stream
announces it and the sender worker drains the table in order, from the
position it stores in ``federation_stream_positions``.
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

import attrs

from matrixd.storage.database import Database
from matrixd.storage.streams import StreamIdGenerator
from matrixd.types import JsonDict
from matrixd.util.clock import Clock


@attrs.frozen(slots=True)
class OutboxEntry:
    """One request to the sender: ``event_id`` (a PDU) or ``edu`` (``{"edu_type", "content", "key"}``)."""

    stream_id: int
    destinations: tuple[str, ...]
    event_id: Optional[str]
    edu: Optional[JsonDict]


class FederationOutboxStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create_id_generator(self) -> StreamIdGenerator:
        """The stream's id generator (the master's; it is the only writer)."""
        return await StreamIdGenerator.create(self._db, "federation_outbox", "stream_id")

    async def add(self, stream_id: int, destinations: Sequence[str], event_id: Optional[str],
                  edu: Optional[JsonDict]) -> None:
        await self._db.simple_insert("federation_outbox", {
            "stream_id": stream_id, "destinations": json.dumps(sorted(destinations)), "event_id": event_id,
            "edu": None if edu is None else json.dumps(edu),
        }, desc="add_federation_outbox")

    async def get_entries(self, from_token: int, to_token: int, limit: int) -> list[OutboxEntry]:
        """Rows with ``from_token < stream_id <= to_token``, in order, at most ``limit``."""
        rows = await self._db.execute(
            "get_federation_outbox",
            "SELECT stream_id, destinations, event_id, edu FROM federation_outbox"
            " WHERE stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?",
            from_token, to_token, limit,
        )
        return [
            OutboxEntry(int(sid), tuple(str(d) for d in json.loads(dests)), event_id,
                        None if edu is None else json.loads(edu))
            for sid, dests, event_id, edu in rows
        ]

    async def delete_up_to(self, stream_id: int) -> None:
        """Drop the rows the sender has queued (it stores its position first)."""
        await self._db.execute("delete_federation_outbox", "DELETE FROM federation_outbox WHERE stream_id <= ?",
                               stream_id)
