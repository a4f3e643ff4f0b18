"""Push rules as clients see them: the spec's server-default rules merged with the user's own.

``modules/push.md`` "Predefined rules" fixes the default set and its order;
only the user id differs between users, so the rules are built per user from
templates.  User-defined rules take precedence over the defaults of the same
kind, except ``.m.rule.master``, which always comes first.

The legacy mention rules ``.m.rule.contains_display_name``,
``.m.rule.roomnotif`` and ``.m.rule.contains_user_name`` were dropped from the
predefined rules in spec v1.17 but are kept here exactly as v1.7-v1.16 define
them: clients that do not send ``m.mentions`` still rely on them.  As those
versions say, they do not apply to events whose content has ``m.mentions``
(see ``matrixd.push.evaluator.LEGACY_MENTION_RULES``).
"""

from __future__ import annotations

import copy
from typing import Any, Awaitable, Callable, Optional, TypeVar

from matrixd.api.errors import Codes, InvalidParamError, MatrixError, NotFoundError
from matrixd.handlers.sync.announcer import StreamAnnouncer
from matrixd.push.conditions import LOCALPART_PLACEHOLDER, USER_PLACEHOLDER, localpart_of, validate_condition
from matrixd.storage.push_rules import PushRulesStore, RuleNotFound, UserPushRules
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName
from matrixd.types import JsonDict

T = TypeVar("T")

#: Rule kinds in evaluation order.
RULE_KINDS = ("override", "content", "room", "sender", "underride")
_USER_ID = USER_PLACEHOLDER
_LOCALPART = LOCALPART_PLACEHOLDER

_SOUND_DEFAULT = {"set_tweak": "sound", "value": "default"}

# The default rules, in the order of the spec; _USER_ID is replaced per user.
_DEFAULT_OVERRIDE: list[JsonDict] = [
    {"rule_id": ".m.rule.master", "enabled": False, "conditions": [], "actions": []},
    {
        "rule_id": ".m.rule.suppress_notices",
        "conditions": [{"kind": "event_match", "key": "content.msgtype", "pattern": "m.notice"}],
        "actions": [],
    },
    {
        "rule_id": ".m.rule.invite_for_me",
        "conditions": [
            {"key": "type", "kind": "event_match", "pattern": "m.room.member"},
            {"key": "content.membership", "kind": "event_match", "pattern": "invite"},
            {"key": "state_key", "kind": "event_match", "pattern": _USER_ID},
        ],
        "actions": ["notify", _SOUND_DEFAULT],
    },
    {
        "rule_id": ".m.rule.member_event",
        "conditions": [{"key": "type", "kind": "event_match", "pattern": "m.room.member"}],
        "actions": [],
    },
    {
        "rule_id": ".m.rule.is_user_mention",
        "conditions": [
            {"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": _USER_ID}
        ],
        "actions": ["notify", _SOUND_DEFAULT, {"set_tweak": "highlight"}],
    },
    {  # legacy (spec v1.7-v1.16), off for events with m.mentions
        "rule_id": ".m.rule.contains_display_name",
        "conditions": [{"kind": "contains_display_name"}],
        "actions": ["notify", _SOUND_DEFAULT, {"set_tweak": "highlight"}],
    },
    {
        "rule_id": ".m.rule.is_room_mention",
        "conditions": [
            {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
            {"kind": "sender_notification_permission", "key": "room"},
        ],
        "actions": ["notify", {"set_tweak": "highlight"}],
    },
    {  # legacy (spec v1.7-v1.16), off for events with m.mentions
        "rule_id": ".m.rule.roomnotif",
        "conditions": [
            {"kind": "event_match", "key": "content.body", "pattern": "@room"},
            {"kind": "sender_notification_permission", "key": "room"},
        ],
        "actions": ["notify", {"set_tweak": "highlight"}],
    },
    {
        "rule_id": ".m.rule.tombstone",
        "conditions": [
            {"kind": "event_match", "key": "type", "pattern": "m.room.tombstone"},
            {"kind": "event_match", "key": "state_key", "pattern": ""},
        ],
        "actions": ["notify", {"set_tweak": "highlight"}],
    },
    {
        "rule_id": ".m.rule.reaction",
        "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.reaction"}],
        "actions": [],
    },
    {
        "rule_id": ".m.rule.room.server_acl",
        "conditions": [
            {"kind": "event_match", "key": "type", "pattern": "m.room.server_acl"},
            {"kind": "event_match", "key": "state_key", "pattern": ""},
        ],
        "actions": [],
    },
    {
        "rule_id": ".m.rule.suppress_edits",
        "conditions": [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}],
        "actions": [],
    },
]

_DEFAULT_CONTENT: list[JsonDict] = [
    {  # legacy (spec v1.7-v1.16), off for events with m.mentions
        "rule_id": ".m.rule.contains_user_name",
        "pattern": _LOCALPART,
        "actions": ["notify", _SOUND_DEFAULT, {"set_tweak": "highlight"}],
    },
]

_DEFAULT_UNDERRIDE: list[JsonDict] = [
    {
        "rule_id": ".m.rule.call",
        "conditions": [{"key": "type", "kind": "event_match", "pattern": "m.call.invite"}],
        "actions": ["notify", {"set_tweak": "sound", "value": "ring"}],
    },
    {
        "rule_id": ".m.rule.encrypted_room_one_to_one",
        "conditions": [
            {"kind": "room_member_count", "is": "2"},
            {"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"},
        ],
        "actions": ["notify", _SOUND_DEFAULT],
    },
    {
        "rule_id": ".m.rule.room_one_to_one",
        "conditions": [
            {"kind": "room_member_count", "is": "2"},
            {"kind": "event_match", "key": "type", "pattern": "m.room.message"},
        ],
        "actions": ["notify", _SOUND_DEFAULT],
    },
    {
        "rule_id": ".m.rule.message",
        "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.message"}],
        "actions": ["notify"],
    },
    {
        "rule_id": ".m.rule.encrypted",
        "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"}],
        "actions": ["notify"],
    },
]

_DEFAULTS: dict[str, list[JsonDict]] = {
    "override": _DEFAULT_OVERRIDE,
    "content": _DEFAULT_CONTENT,
    "room": [],
    "sender": [],
    "underride": _DEFAULT_UNDERRIDE,
}


def _fill(value: Any, user_id: str) -> Any:
    if value == _USER_ID:
        return user_id
    if value == _LOCALPART and user_id != _USER_ID:  # the compiled default rules keep the placeholder
        return localpart_of(user_id)
    if isinstance(value, dict):
        return {k: _fill(v, user_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, user_id) for v in value]
    return value


def default_push_rules(user_id: str) -> dict[str, list[JsonDict]]:
    """The server-default rules for ``user_id`` by kind, in spec order, each marked ``default: true``."""
    out: dict[str, list[JsonDict]] = {}
    for kind in RULE_KINDS:
        rules = []
        for template in _DEFAULTS[kind]:
            rule = _fill(copy.deepcopy(template), user_id)
            rule["default"] = True
            rule.setdefault("enabled", True)
            rules.append(rule)
        out[kind] = rules
    return out


def merge_push_rules(user_id: str, stored: UserPushRules) -> dict[str, list[JsonDict]]:
    """The user's whole ruleset: their rules before the defaults of each kind (the master rule first)."""
    defaults = default_push_rules(user_id)
    default_actions = {(r.kind, r.rule_id): r.actions for r in stored.rules if r.rule_id.startswith(".")}
    ruleset: dict[str, list[JsonDict]] = {}
    for kind in RULE_KINDS:
        own: list[JsonDict] = []
        for r in stored.rules:
            if r.kind != kind or r.rule_id.startswith("."):
                continue
            rule: JsonDict = {"rule_id": r.rule_id, "default": False, "enabled": True, "actions": r.actions}
            if r.conditions is not None:
                rule["conditions"] = r.conditions
            if r.pattern is not None:
                rule["pattern"] = r.pattern
            own.append(rule)
        kind_defaults = defaults[kind]
        for rule in kind_defaults:
            if (kind, rule["rule_id"]) in default_actions:
                rule["actions"] = default_actions[(kind, rule["rule_id"])]
        if kind == "override" and kind_defaults and kind_defaults[0]["rule_id"] == ".m.rule.master":
            rules = [kind_defaults[0], *own, *kind_defaults[1:]]
        else:
            rules = [*own, *kind_defaults]
        for rule in rules:
            enabled = stored.enabled.get((kind, rule["rule_id"]))
            if enabled is not None:
                rule["enabled"] = enabled
        ruleset[kind] = rules
    return ruleset


class PushRulesHandler:
    """Serves a user's push rules (reads only; editing belongs to the push feature)."""

    def __init__(self, store: PushRulesStore) -> None:
        self._store = store

    async def get_ruleset(self, user_id: str) -> dict[str, list[JsonDict]]:
        """The ``global`` ruleset: ``{kind: [rule, ...]}`` for every kind."""
        return merge_push_rules(user_id, await self._store.get_user_rules(user_id))

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> Optional[JsonDict]:
        for rule in (await self.get_ruleset(user_id)).get(kind, []):
            if rule["rule_id"] == rule_id:
                return rule
        return None

    async def get_push_rules_account_data(self, user_id: str) -> JsonDict:
        """The content of the ``m.push_rules`` account data event."""
        return {"global": await self.get_ruleset(user_id)}


_SIMPLE_ACTIONS = frozenset({"notify", "dont_notify", "coalesce"})


def validate_actions(actions: Any) -> list[Any]:
    """The actions of a ``PUT``, checked: ``notify``/``dont_notify``/``coalesce`` or ``set_tweak`` objects."""
    if not isinstance(actions, list):
        raise InvalidParamError("'actions' must be a list")
    for action in actions:
        if isinstance(action, str):
            if action not in _SIMPLE_ACTIONS:
                raise InvalidParamError(f"Unknown push rule action {action!r}")
        elif isinstance(action, dict):
            if not isinstance(action.get("set_tweak"), str):
                raise InvalidParamError("An action object must have a string 'set_tweak'")
        else:
            raise InvalidParamError("Each action must be a string or an object")
    return actions


def _check_kind(kind: str) -> None:
    if kind not in RULE_KINDS:
        raise InvalidParamError(f"Unknown push rule kind {kind!r}")


#: Called with the user id after their rules changed (compiled ruleset caches).
RulesChangedCallback = Callable[[str], None]


class PushRuleEditor:
    """``PUT``/``DELETE /pushrules/global/{kind}/{ruleId}`` and its ``enabled``/``actions``.

    Each change takes a push rules stream id and is announced with the user's
    id as the wake-up key, so ``/sync`` sends the new ``m.push_rules``.
    """

    def __init__(self, store: PushRulesStore, reader: PushRulesHandler, notifier: Notifier) -> None:
        self._store = store
        self._reader = reader
        self._announcer = StreamAnnouncer(notifier, StreamName.PUSH_RULES, store.get_current_token)
        self._callbacks: list[RulesChangedCallback] = []

    def add_change_callback(self, cb: RulesChangedCallback) -> None:
        self._callbacks.append(cb)

    def set_publisher(self, notify: Callable[[], None]) -> None:
        """Announce changes through the replication publisher (``notify`` is its notify for push_rules)."""
        self._announcer.publish_through(notify)

    async def put_rule(
        self, user_id: str, kind: str, rule_id: str, body: Any, before: Optional[str], after: Optional[str]
    ) -> None:
        _check_kind(kind)
        if rule_id.startswith("."):
            raise InvalidParamError("Rule ids starting with '.' are reserved for server-default rules")
        if "/" in rule_id or "\\" in rule_id:
            raise InvalidParamError("Rule ids may not contain '/' or '\\'")
        for anchor in (before, after):
            if anchor is not None and anchor.startswith("."):
                raise InvalidParamError("A rule cannot be placed relative to a server-default rule")
        if not isinstance(body, dict):
            raise InvalidParamError("The body must be a JSON object")
        actions = validate_actions(body.get("actions"))
        conditions: Optional[list[Any]] = None
        pattern: Optional[str] = None
        if kind == "content":
            pattern = body.get("pattern")
            if not isinstance(pattern, str):
                raise InvalidParamError("Content rules need a string 'pattern'")
        elif kind in ("override", "underride"):
            raw = body.get("conditions", [])
            if not isinstance(raw, list):
                raise InvalidParamError("'conditions' must be a list")
            for cond in raw:
                problem = validate_condition(cond)
                if problem is not None:
                    raise InvalidParamError(problem)
            conditions = raw
        try:
            stream_id = await self._run(
                self._store.upsert_rule(user_id, kind, rule_id, conditions, pattern, actions, before, after)
            )
        except RuleNotFound as e:
            raise MatrixError(400, f"before/after rule not found: {e.rule_id}", Codes.UNKNOWN)
        self._changed(user_id, stream_id)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        _check_kind(kind)
        if rule_id.startswith("."):
            if await self._reader.get_rule(user_id, kind, rule_id) is None:
                raise NotFoundError("The push rule was not found.")
            raise InvalidParamError("Server-default rules cannot be deleted")
        stream_id = await self._run(self._store.delete_rule(user_id, kind, rule_id))
        if stream_id is None:
            self._announcer.flush()
            raise NotFoundError("The push rule was not found.")
        self._changed(user_id, stream_id)

    async def set_enabled(self, user_id: str, kind: str, rule_id: str, enabled: Any) -> None:
        _check_kind(kind)
        if not isinstance(enabled, bool):
            raise InvalidParamError("'enabled' must be a boolean")
        await self._require_rule(user_id, kind, rule_id)
        self._changed(user_id, await self._run(self._store.set_enabled(user_id, kind, rule_id, enabled)))

    async def set_actions(self, user_id: str, kind: str, rule_id: str, actions: Any) -> None:
        _check_kind(kind)
        checked = validate_actions(actions)
        await self._require_rule(user_id, kind, rule_id)
        self._changed(user_id, await self._run(self._store.set_actions(user_id, kind, rule_id, checked)))

    async def _require_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        if await self._reader.get_rule(user_id, kind, rule_id) is None:
            raise NotFoundError("The push rule was not found.")

    async def _run(self, write: Awaitable[T]) -> T:
        try:
            return await write
        except BaseException:
            self._announcer.flush()  # the id finished without a row
            raise

    def _changed(self, user_id: str, stream_id: int) -> None:
        for cb in self._callbacks:
            cb(user_id)
        self._announcer.announce(stream_id, [user_id])
