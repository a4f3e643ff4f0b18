"""Users' push rules as stored: their own rules, their changes to the defaults, and the stream.

The server-default rules are not stored (they are generated per user by
:mod:`matrixd.handlers.push_rules`); a stored row whose ``rule_id`` starts
with ``.`` replaces the actions of that default rule.  Every write
(``PUT``/``DELETE /pushrules/...``) adds a row to ``push_rules_stream`` in
its transaction, so ``/sync`` sees the change as ``m.push_rules``.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional, Sequence

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, in_list_clause
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

    async def get_rules_for_users(self, user_ids: Sequence[str]) -> dict[str, UserPushRules]:
        """Many users' stored rules in two queries (users without any get an empty :class:`UserPushRules`)."""
        users = list(user_ids)

        def _txn(txn: Cursor) -> dict[str, UserPushRules]:
            out = {u: UserPushRules() for u in users}
            for chunk in batch_iter(users, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "user_id", chunk)
                txn.execute(
                    "SELECT user_id, kind, rule_id, priority, conditions, pattern, actions FROM push_rules"
                    f" WHERE {clause} ORDER BY user_id, kind, priority DESC, rule_id",
                    args,
                )
                for user_id, kind, rule_id, priority, conditions, pattern, actions in txn:
                    out[user_id].rules.append(StoredPushRule(
                        kind, rule_id, int(priority), json.loads(conditions) if conditions else None, pattern,
                        json.loads(actions),
                    ))
                txn.execute(f"SELECT user_id, kind, rule_id, enabled FROM push_rules_enable WHERE {clause}", args)
                for user_id, kind, rule_id, enabled in txn:
                    out[user_id].enabled[(kind, rule_id)] = bool(enabled)
            return out

        if not users:
            return {}
        return await self._db.run_interaction("get_push_rules_for_users", _txn)

    # -- writes (each takes one id of the push rules stream) --------------------------

    async def _write(self, desc: str, fn: Callable[[Cursor], object], user_id: str) -> int:
        def _txn(txn: Cursor, stream_id: int) -> None:
            fn(txn)
            txn.execute("INSERT INTO push_rules_stream (stream_id, user_id) VALUES (?, ?)", (stream_id, user_id))

        with self._ids.get_next() as stream_id:
            await self._db.run_interaction(desc, _txn, stream_id)
        return stream_id

    async def upsert_rule(
        self,
        user_id: str,
        kind: str,
        rule_id: str,
        conditions: Optional[list[Any]],
        pattern: Optional[str],
        actions: list[Any],
        before: Optional[str] = None,
        after: Optional[str] = None,
    ) -> int:
        """Create or replace a user-defined rule, placed before/after another one of the kind.

        A new rule without ``before``/``after`` becomes the kind's most important;
        an existing one keeps its place.  Raises :class:`RuleNotFound` naming a
        missing ``before``/``after`` rule.  Returns the stream id.
        """

        def _txn(txn: Cursor) -> None:
            txn.execute(
                "SELECT rule_id FROM push_rules WHERE user_id = ? AND kind = ? AND rule_id NOT LIKE '.%'"
                " ORDER BY priority DESC, rule_id",
                (user_id, kind),
            )
            order = [r[0] for r in txn]
            exists = rule_id in order
            anchor = before if before is not None else after
            if anchor is not None and (anchor not in order or anchor == rule_id):
                raise RuleNotFound(anchor)
            if exists and anchor is not None:
                order.remove(rule_id)
            if anchor is not None:
                i = order.index(anchor)
                order.insert(i if before is not None else i + 1, rule_id)
            elif not exists:
                order.insert(0, rule_id)
            txn.execute(
                "INSERT INTO push_rules (user_id, kind, rule_id, priority, conditions, pattern, actions)"
                " VALUES (?, ?, ?, 0, ?, ?, ?) ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET"
                " conditions = EXCLUDED.conditions, pattern = EXCLUDED.pattern, actions = EXCLUDED.actions",
                (user_id, kind, rule_id, None if conditions is None else _dump(conditions), pattern, _dump(actions)),
            )
            txn.execute_batch(
                "UPDATE push_rules SET priority = ? WHERE user_id = ? AND kind = ? AND rule_id = ?",
                [(len(order) - i, user_id, kind, r) for i, r in enumerate(order)],
            )
            if not exists:
                # A (re)created rule is enabled, whatever an older rule of that id was.
                txn.execute(
                    "DELETE FROM push_rules_enable WHERE user_id = ? AND kind = ? AND rule_id = ?",
                    (user_id, kind, rule_id),
                )

        return await self._write("upsert_push_rule", _txn, user_id)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> Optional[int]:
        """Delete a user-defined rule; None if there was none."""
        deleted = [0]

        def _txn(txn: Cursor) -> None:
            txn.execute(
                "DELETE FROM push_rules WHERE user_id = ? AND kind = ? AND rule_id = ?", (user_id, kind, rule_id)
            )
            deleted[0] = txn.rowcount
            txn.execute(
                "DELETE FROM push_rules_enable WHERE user_id = ? AND kind = ? AND rule_id = ?",
                (user_id, kind, rule_id),
            )

        stream_id = await self._write("delete_push_rule", _txn, user_id)
        return stream_id if deleted[0] else None

    async def set_enabled(self, user_id: str, kind: str, rule_id: str, enabled: bool) -> int:
        def _txn(txn: Cursor) -> None:
            txn.execute(
                "INSERT INTO push_rules_enable (user_id, kind, rule_id, enabled) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET enabled = EXCLUDED.enabled",
                (user_id, kind, rule_id, enabled),
            )

        return await self._write("set_push_rule_enabled", _txn, user_id)

    async def set_actions(self, user_id: str, kind: str, rule_id: str, actions: list[Any]) -> int:
        """Replace a rule's actions (for a default rule, store the override row)."""

        def _txn(txn: Cursor) -> None:
            if rule_id.startswith("."):
                txn.execute(
                    "INSERT INTO push_rules (user_id, kind, rule_id, priority, conditions, pattern, actions)"
                    " VALUES (?, ?, ?, 0, NULL, NULL, ?) ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET"
                    " actions = EXCLUDED.actions",
                    (user_id, kind, rule_id, _dump(actions)),
                )
            else:
                txn.execute(
                    "UPDATE push_rules SET actions = ? WHERE user_id = ? AND kind = ? AND rule_id = ?",
                    (_dump(actions), user_id, kind, rule_id),
                )

        return await self._write("set_push_rule_actions", _txn, user_id)


class RuleNotFound(Exception):
    """A ``before``/``after`` anchor that is not one of the user's rules of the kind."""

    def __init__(self, rule_id: str) -> None:
        super().__init__(rule_id)
        self.rule_id = rule_id


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
