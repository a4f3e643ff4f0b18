"""Application service transaction bookkeeping: stream position and pending transaction per service."""

from __future__ import annotations

import json
from typing import Optional

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.types import JsonDict
from matrixd.util.clock import Clock


@attrs.frozen(slots=True)
class ServicePosition:
    """Events up to ``stream_position`` are dealt with; ``last_txn_id`` was the last acknowledged txn."""

    stream_position: int
    last_txn_id: int


@attrs.frozen(slots=True)
class PendingTransaction:
    """The transaction in flight: resent unchanged until acknowledged."""

    txn_id: int
    to_position: int
    event_ids: tuple[str, ...]
    ephemeral: tuple[JsonDict, ...]
    #: To-device messages for the service's users (MSC4203), with ``to_user_id``/``to_device_id``.
    to_device: tuple[JsonDict, ...] = ()


def _extras_json(ephemeral: list[JsonDict], to_device: list[JsonDict]) -> str:
    """The ``ephemeral`` column: the EDU list, or (with to-device messages) an object holding both lists."""
    if not to_device:
        return json.dumps(ephemeral)
    return json.dumps({"ephemeral": ephemeral, "to_device": to_device})


def _parse_extras(raw: str) -> tuple[tuple[JsonDict, ...], tuple[JsonDict, ...]]:
    value = json.loads(raw)
    if isinstance(value, dict):
        return tuple(value.get("ephemeral") or ()), tuple(value.get("to_device") or ())
    return tuple(value), ()


class AppServiceStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get_position(self, as_id: str, initial_position: int) -> ServicePosition:
        """The service's position; a service seen for the first time starts at ``initial_position`` (now)."""

        def _txn(txn: Cursor) -> ServicePosition:
            txn.execute("SELECT stream_position, last_txn_id FROM appservice_stream_positions WHERE as_id = ?",
                        (as_id,))
            row = txn.fetchone()
            if row is not None:
                return ServicePosition(int(row[0]), int(row[1]))
            txn.execute("INSERT INTO appservice_stream_positions (as_id, stream_position, last_txn_id)"
                        " VALUES (?, ?, 0)", (as_id, initial_position))
            return ServicePosition(initial_position, 0)

        return await self._db.run_interaction("appservice_get_position", _txn)

    async def set_position(self, as_id: str, stream_position: int) -> None:
        """Skip uninteresting events (no transaction was needed for them)."""
        await self._db.execute(
            "appservice_set_position",
            "UPDATE appservice_stream_positions SET stream_position = ? WHERE as_id = ? AND stream_position < ?",
            stream_position, as_id, stream_position,
        )

    async def get_pending(self, as_id: str) -> Optional[PendingTransaction]:
        rows = await self._db.execute(
            "appservice_get_pending",
            "SELECT txn_id, to_position, event_ids, ephemeral FROM appservice_pending_txns WHERE as_id = ?",
            as_id,
        )
        if not rows:
            return None
        txn_id, to_position, event_ids, extras = rows[0]
        ephemeral, to_device = _parse_extras(extras)
        return PendingTransaction(int(txn_id), int(to_position), tuple(json.loads(event_ids)), ephemeral, to_device)

    async def create_pending(self, as_id: str, to_position: int, event_ids: list[str],
                             ephemeral: list[JsonDict], to_device: Optional[list[JsonDict]] = None
                             ) -> PendingTransaction:
        """Record the next transaction (txn id = last acknowledged + 1) before it is first sent."""

        def _txn(txn: Cursor) -> PendingTransaction:
            txn.execute("SELECT last_txn_id FROM appservice_stream_positions WHERE as_id = ?", (as_id,))
            row = txn.fetchone()
            txn_id = (int(row[0]) if row else 0) + 1
            txn.execute(
                "INSERT INTO appservice_pending_txns (as_id, txn_id, to_position, event_ids, ephemeral)"
                " VALUES (?, ?, ?, ?, ?)",
                (as_id, txn_id, to_position, json.dumps(event_ids), _extras_json(ephemeral, to_device or [])),
            )
            return PendingTransaction(txn_id, to_position, tuple(event_ids), tuple(ephemeral), tuple(to_device or ()))

        return await self._db.run_interaction("appservice_create_pending", _txn)

    async def complete_pending(self, as_id: str, pending: PendingTransaction) -> None:
        """The service acknowledged ``pending``: advance its position and forget the transaction."""

        def _txn(txn: Cursor) -> None:
            txn.execute("DELETE FROM appservice_pending_txns WHERE as_id = ? AND txn_id = ?",
                        (as_id, pending.txn_id))
            txn.execute(
                "UPDATE appservice_stream_positions SET last_txn_id = ?,"
                " stream_position = CASE WHEN stream_position < ? THEN ? ELSE stream_position END"
                " WHERE as_id = ?",
                (pending.txn_id, pending.to_position, pending.to_position, as_id),
            )

        await self._db.run_interaction("appservice_complete_pending", _txn)

