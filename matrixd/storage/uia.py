"""User-interactive authentication sessions and the stages they have completed.

Kept in the database (not in memory) so a session survives a restart and any
process serving the endpoint sees it.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.types import JsonDict
from matrixd.util.clock import Clock


@attrs.frozen(slots=True)
class UiaSession:
    session_id: str
    creation_ts: int
    method: str
    uri: str
    user_id: Optional[str]
    params: JsonDict
    # bcrypt hashes of the secret parameters (passwords), which are not kept in ``params``.
    hashed_params: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class CompletedStage:
    stage_type: str
    result: Any


class UiaSessionStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create_session(self, session_id: str, method: str, uri: str, user_id: Optional[str],
                             params: JsonDict, hashed_params: dict[str, str]) -> UiaSession:
        now = self._clock.time_msec()
        await self._db.execute(
            "create_ui_auth_session",
            "INSERT INTO ui_auth_sessions (session_id, creation_ts, method, uri, user_id, params, hashed_params)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            session_id, now, method, uri, user_id, json.dumps(params), json.dumps(hashed_params),
        )
        return UiaSession(session_id, now, method, uri, user_id, params, hashed_params)

    async def get_session(self, session_id: str) -> Optional[UiaSession]:
        rows = await self._db.execute(
            "get_ui_auth_session",
            "SELECT session_id, creation_ts, method, uri, user_id, params, hashed_params FROM ui_auth_sessions"
            " WHERE session_id = ?",
            session_id,
        )
        if not rows:
            return None
        r = rows[0]
        return UiaSession(r[0], int(r[1]), r[2], r[3], r[4], json.loads(r[5]), json.loads(r[6]))

    async def get_completed_stages(self, session_id: str) -> list[CompletedStage]:
        """The session's completed stages, in the order they were completed."""
        rows = await self._db.execute(
            "get_ui_auth_stages",
            "SELECT stage_type, result FROM ui_auth_sessions_stages WHERE session_id = ? ORDER BY stage_order",
            session_id,
        )
        return [CompletedStage(r[0], json.loads(r[1])) for r in rows]

    async def add_completed_stage(self, session_id: str, stage_type: str, result: Any) -> bool:
        """Record a completed stage; False if it was already recorded (nothing changed)."""
        def _txn(txn: Cursor) -> bool:
            txn.execute(
                "SELECT COUNT(*) FROM ui_auth_sessions_stages WHERE session_id = ?", (session_id,)
            )
            row = txn.fetchone()
            order = int(row[0]) if row else 0
            txn.execute(
                "INSERT INTO ui_auth_sessions_stages (session_id, stage_type, stage_order, result)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (session_id, stage_type) DO NOTHING",
                (session_id, stage_type, order, json.dumps(result)),
            )
            return txn.rowcount == 1

        return await self._db.run_interaction("add_ui_auth_stage", _txn)

    async def delete_session(self, session_id: str) -> bool:
        """Delete a session and its stages; False if it did not exist (another request took it)."""
        def _txn(txn: Cursor) -> bool:
            txn.execute("DELETE FROM ui_auth_sessions_stages WHERE session_id = ?", (session_id,))
            txn.execute("DELETE FROM ui_auth_sessions WHERE session_id = ?", (session_id,))
            return txn.rowcount == 1

        return await self._db.run_interaction("delete_ui_auth_session", _txn)

    async def delete_sessions_before(self, before_ts: int, limit: int = 1000) -> list[CompletedStage]:
        """Delete sessions created before ``before_ts`` (at most ``limit``); returns their completed stages.

        The caller releases what those stages reserved (e.g. registration token uses).
        """
        def _txn(txn: Cursor) -> list[CompletedStage]:
            txn.execute(
                "SELECT session_id FROM ui_auth_sessions WHERE creation_ts < ? ORDER BY creation_ts LIMIT ?",
                (before_ts, limit),
            )
            ids = [r[0] for r in txn.fetchall()]
            stages: list[CompletedStage] = []
            for sid in ids:
                txn.execute("SELECT stage_type, result FROM ui_auth_sessions_stages WHERE session_id = ?", (sid,))
                stages += [CompletedStage(r[0], json.loads(r[1])) for r in txn.fetchall()]
                txn.execute("DELETE FROM ui_auth_sessions_stages WHERE session_id = ?", (sid,))
                txn.execute("DELETE FROM ui_auth_sessions WHERE session_id = ?", (sid,))
            return stages

        return await self._db.run_interaction("delete_expired_ui_auth_sessions", _txn)
