"""Users' push rules as stored: their own rules, their changes to the defaults, and the stream.

The server-default rules are not stored (they are generated per user by
:mod:`matrixd.handlers.push_rules`); a stored row whose ``rule_id`` starts
with ``.`` replaces the actions of that default rule.  This store reads;
editing the rules (``PUT``/``DELETE /pushrules/...``) adds the writes and
takes ids from the same stream generator.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.streams import StreamIdGenerator
from matrixd.util.clock import Clock


@attrs.frozen(slots=True)
class StoredPushRule:
    kind: str
    rule_id: str
    priority: int
    conditions: Optional[list[Any]]
    pattern: Optional[str]
    actions: list[Any]


@attrs.define
class UserPushRules:
    """What a user changed: their rules (by kind, highest priority first) and enabled flags."""

    rules: list[StoredPushRule] = attrs.field(factory=list)
    enabled: dict[tuple[str, str], bool] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class PushRulesStreamRow:
    stream_id: int
    user_id: str


class PushRulesStore:
    def __init__(self, db: Database, clock: Clock, stream_ids: StreamIdGenerator) -> None:
        self._db = db
        self._clock = clock
        self._ids = stream_ids

    @staticmethod
    async def create_stream_ids(db: Database) -> StreamIdGenerator:
        return await StreamIdGenerator.create(db, "push_rules_stream", "stream_id")

    @property
    def stream_ids(self) -> StreamIdGenerator:
        """The generator writers of push rules take their ids from."""
        return self._ids

    def get_current_token(self) -> int:
        return self._ids.get_current_token()

    async def get_user_rules(self, user_id: str) -> UserPushRules:
        def _txn(txn: Cursor) -> UserPushRules:
            out = UserPushRules()
            txn.execute(
                "SELECT kind, rule_id, priority, conditions, pattern, actions FROM push_rules"
                " WHERE user_id = ? ORDER BY kind, priority DESC, rule_id",
                (user_id,),
            )
            for kind, rule_id, priority, conditions, pattern, actions in txn:
                out.rules.append(
                    StoredPushRule(
                        kind, rule_id, int(priority), json.loads(conditions) if conditions else None, pattern,
                        json.loads(actions),
                    )
                )
            txn.execute("SELECT kind, rule_id, enabled FROM push_rules_enable WHERE user_id = ?", (user_id,))
            out.enabled = {(k, r): bool(e) for k, r, e in txn}
            return out

        return await self._db.run_interaction("get_push_rules", _txn)

    async def has_changed_since(self, user_id: str, from_id: int, to_id: int) -> bool:
        """Whether the user's rules changed in ``(from_id, to_id]``."""
        if from_id >= to_id:
            return False
        rows = await self._db.execute(
            "push_rules_changed",
            "SELECT 1 FROM push_rules_stream WHERE user_id = ? AND stream_id > ? AND stream_id <= ? LIMIT 1",
            user_id,
            from_id,
            to_id,
        )
        return bool(rows)

    async def get_updates(self, from_id: int, to_id: int, limit: int) -> list[PushRulesStreamRow]:
        """Changes with ``from_id < stream_id <= to_id``, oldest first (replication catch-up)."""
        rows = await self._db.execute(
            "get_push_rules_updates",
            "SELECT stream_id, user_id FROM push_rules_stream WHERE stream_id > ? AND stream_id <= ?"
            " ORDER BY stream_id LIMIT ?",
            from_id,
            to_id,
            limit,
        )
        return [PushRulesStreamRow(int(r[0]), r[1]) for r in rows]
