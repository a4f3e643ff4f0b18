"""Push rules as clients see them: the spec's server-default rules merged with the user's own.

``modules/push.md`` "Predefined rules" fixes the default set and its order;
only the user id differs between users, so the rules are built per user from
templates.  User-defined rules take precedence over the defaults of the same
kind, except ``.m.rule.master``, which always comes first.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

from matrixd.storage.push_rules import PushRulesStore, UserPushRules
from matrixd.types import JsonDict

#: Rule kinds in evaluation order.
RULE_KINDS = ("override", "content", "room", "sender", "underride")
_USER_ID = "[the user's Matrix ID]"

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
    {
        "rule_id": ".m.rule.is_room_mention",
        "conditions": [
            {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
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
    "content": [],
    "room": [],
    "sender": [],
    "underride": _DEFAULT_UNDERRIDE,
}


def _fill(value: Any, user_id: str) -> Any:
    if value == _USER_ID:
        return user_id
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
