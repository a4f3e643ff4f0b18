"""Reports of events, rooms and users, kept for the server's administrators."""

from __future__ import annotations

from typing import Optional

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.sequences import get_sequence_generator
from matrixd.util.clock import Clock


@attrs.frozen(slots=True)
class ContentReport:
    id: int
    received_ts: int
    reporter: str
    room_id: Optional[str]
    event_id: Optional[str]
    target_user_id: Optional[str]
    reason: Optional[str]
    score: Optional[int]


_COLUMNS = "id, received_ts, reporter, room_id, event_id, target_user_id, reason, score"


class ReportStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._ids = get_sequence_generator(db, "content_report_id_seq", "content_reports", "id")

    async def add_report(
        self,
        reporter: str,
        *,
        room_id: Optional[str] = None,
        event_id: Optional[str] = None,
        target_user_id: Optional[str] = None,
        reason: Optional[str] = None,
        score: Optional[int] = None,
    ) -> int:
        """Store a report and return its id."""
        now = self._clock.time_msec()

        def _txn(txn: Cursor) -> int:
            report_id = self._ids.next_id_txn(txn)
            txn.execute(
                f"INSERT INTO content_reports ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (report_id, now, reporter, room_id, event_id, target_user_id, reason, score),
            )
            return report_id

        return await self._db.run_interaction("add_report", _txn)

    async def get_reports(self, *, room_id: Optional[str] = None, limit: int = 100) -> list[ContentReport]:
        """The newest reports first (all, or those about one room)."""
        where, args = ("WHERE room_id = ?", [room_id]) if room_id is not None else ("", [])
        rows = await self._db.execute(
            "get_reports", f"SELECT {_COLUMNS} FROM content_reports {where} ORDER BY id DESC LIMIT ?", *args, limit
        )
        return [
            ContentReport(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], r[6], None if r[7] is None else int(r[7]))
            for r in rows
        ]
