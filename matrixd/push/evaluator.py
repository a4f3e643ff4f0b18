"""Compiled rulesets and their evaluation: the first enabled matching rule's actions win.

The server-default rules are compiled once for every user (their user id is
a placeholder read at evaluation time), so users who changed nothing share
one :class:`CompiledRuleset` and the per-event memo of user-independent
conditions.  A user's own rules are compiled when their ruleset is loaded and
the compiled form is cached until the rules change.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Optional, Sequence

import attrs

from matrixd.handlers.push_rules import RULE_KINDS, merge_push_rules
from matrixd.push.conditions import (
    LOCALPART_PLACEHOLDER,
    USER_PLACEHOLDER,
    Condition,
    ContainsDisplayName,
    ContainsLocalpart,
    EventFacts,
    EventMatch,
    UserFacts,
    compile_condition,
)
from matrixd.storage.push_rules import UserPushRules
from matrixd.types import JsonDict


@attrs.frozen(slots=True)
class Actions:
    """What a matching rule asks for, in the form the push actions table stores."""

    notify: bool
    highlight: bool
    actions: tuple[Any, ...]
    #: The actions as stored (JSON), encoded once per compiled rule.
    encoded: str = attrs.field(default="[]", eq=False)


NO_ACTION = Actions(False, False, ())


def parse_actions(actions: Sequence[Any]) -> Actions:
    """``notify``/``coalesce`` notify; ``set_tweak: highlight`` (value default true) highlights."""
    notify = False
    highlight = False
    for action in actions:
        if action in ("notify", "coalesce"):
            notify = True
        elif isinstance(action, dict) and action.get("set_tweak") == "highlight":
            highlight = action.get("value", True) is True
    return Actions(notify, highlight, tuple(actions), json.dumps(list(actions), separators=(",", ":")))


#: The pre-v1.17 default rules that intentional mentions replace (MSC3952, spec v1.7): they do not
#: match an event whose content has an ``m.mentions`` property.
LEGACY_MENTION_RULES = frozenset({".m.rule.contains_display_name", ".m.rule.contains_user_name", ".m.rule.roomnotif"})


@attrs.frozen(slots=True)
class CompiledRule:
    rule_id: str
    conditions: tuple[Condition, ...]
    actions: Actions
    needs_display_name: bool
    #: Skipped for events with ``m.mentions`` (a server-default legacy mention rule).
    legacy_mention: bool = False

    @property
    def needs_mention_index(self) -> bool:
        """A condition can narrow its candidates with the room's :class:`MentionIndex`."""
        return any(isinstance(c, (ContainsDisplayName, ContainsLocalpart)) for c in self.conditions)


def compile_rule(kind: str, rule: JsonDict) -> CompiledRule:
    """One rule of any kind as a list of conditions (content, room and sender rules included)."""
    rule_id = rule["rule_id"]
    is_default = rule.get("default") is True
    if kind == "content":
        pattern = rule.get("pattern")
        conds: list[Condition] = [
            ContainsLocalpart() if is_default and pattern == LOCALPART_PLACEHOLDER
            else EventMatch("content.body", pattern) if isinstance(pattern, str) else compile_condition(None)
        ]
    elif kind == "room":
        conds = [compile_condition({"kind": "event_match", "key": "room_id", "pattern": rule_id})]
    elif kind == "sender":
        conds = [compile_condition({"kind": "event_match", "key": "sender", "pattern": rule_id})]
    else:
        conds = [compile_condition(c) for c in rule.get("conditions") or []]
    return CompiledRule(
        rule_id=rule_id,
        conditions=tuple(conds),
        actions=parse_actions(rule.get("actions") or []),
        needs_display_name=any(isinstance(c, ContainsDisplayName) for c in conds),
        legacy_mention=is_default and rule_id in LEGACY_MENTION_RULES,
    )


class CompiledRuleset:
    """A user's enabled rules in evaluation order.

    The outcome for a user depends on the event (memoised per event) and on
    the few user-dependent conditions (mentions of the user, invites of the
    user, display names), so :meth:`evaluate` first checks only those, then
    reuses the outcome of an earlier user of the same ruleset with the same
    answers: in a big room the rules are walked about once per event.
    """

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        self.rules = tuple(rules)
        self.needs_display_name = any(r.needs_display_name for r in self.rules)
        self.needs_mention_index = any(r.needs_mention_index for r in self.rules)
        user_conds: dict[int, Condition] = {}
        outside_legacy: set[int] = set()
        for rule in self.rules:
            for cond in rule.conditions:
                if cond.user_dependent:
                    user_conds.setdefault(id(cond), cond)
                    if not rule.legacy_mention:
                        outside_legacy.add(id(cond))
        self._user_conds = tuple(user_conds.values())
        # With m.mentions the legacy rules are skipped: conditions only they use cannot change an outcome.
        self._user_conds_with_mentions = tuple(c for c in self._user_conds if id(c) in outside_legacy)
        # Rules with an ``event_match`` on ``type`` against a literal only apply to that type:
        # most events are walked through a third of the default rules.
        self._rule_types = tuple(_literal_type(r) for r in self.rules)
        self._by_type: dict[str, tuple[CompiledRule, ...]] = {}

    def _rules_for(self, facts: EventFacts) -> tuple[CompiledRule, ...]:
        """The rules that may match the event, given its type (all of them if it has no ASCII string type)."""
        event_type = facts.event.get("type")
        if not isinstance(event_type, str) or not event_type.isascii():
            return self.rules
        lowered = event_type.lower()
        found = self._by_type.get(lowered)
        if found is None:
            if len(self._by_type) >= _MAX_TYPES:  # event types are chosen by senders: keep the table bounded
                self._by_type.clear()
            found = self._by_type[lowered] = tuple(
                r for r, t in zip(self.rules, self._rule_types) if t is None or t == lowered
            )
        return found

    def candidates(self, facts: EventFacts) -> Optional[frozenset[str]]:
        """Lower-cased ids of the users whose outcome may differ from :meth:`base` (None: anyone's may)."""
        out: set[str] = set()
        for cond in self._user_conds_with_mentions if facts.has_mentions else self._user_conds:
            found = cond.candidates(facts)
            if found is None:
                return None
            out |= found
        return frozenset(out)

    def base(self, facts: EventFacts) -> Actions:
        """The outcome for a user none of whose user-dependent conditions match."""
        key = (id(self), (False,) * len(self._user_conds))
        found: Optional[Actions] = facts.outcomes.get(key)
        if found is None:
            found = facts.outcomes[key] = self._walk(facts, {id(c): False for c in self._user_conds})
        return found

    def evaluate(self, facts: EventFacts, user: UserFacts) -> Actions:
        answers = tuple(c.matches(facts, user) for c in self._user_conds)
        key = (id(self), answers)
        outcomes = facts.outcomes
        found: Optional[Actions] = outcomes.get(key)
        if found is None:
            found = outcomes[key] = self._walk(facts, dict(zip(map(id, self._user_conds), answers)))
        return found

    def _walk(self, facts: EventFacts, user_answers: dict[int, bool]) -> Actions:
        memo = facts.memo
        has_mentions = facts.has_mentions
        for rule in self._rules_for(facts):
            if has_mentions and rule.legacy_mention:
                continue
            for cond in rule.conditions:
                key = id(cond)
                if cond.user_dependent:
                    ok = user_answers[key]
                else:
                    cached = memo.get(key)
                    if cached is None:
                        cached = memo[key] = cond.matches(facts, _NOBODY)
                    ok = cached
                if not ok:
                    break
            else:
                return rule.actions
        return NO_ACTION


_NOBODY = UserFacts("")
#: Event types whose applicable rules a ruleset keeps.
_MAX_TYPES = 256


def _literal_type(rule: CompiledRule) -> Optional[str]:
    """The one (lower-cased) event type the rule can match, if a condition pins it, else None."""
    for cond in rule.conditions:
        if isinstance(cond, EventMatch) and cond.key == "type" and cond.literal is not None:
            return cond.literal
    return None


class RulesetCompiler:
    """Turns stored rules into compiled rulesets, sharing the default rules' compiled conditions."""

    def __init__(self) -> None:
        template = merge_push_rules(USER_PLACEHOLDER, UserPushRules())
        self._default_rules: dict[tuple[str, str], CompiledRule] = {
            (kind, r["rule_id"]): compile_rule(kind, r) for kind in RULE_KINDS for r in template[kind]
        }
        self.default_ruleset = self._build(template)

    def compile(self, user_id: str, stored: UserPushRules) -> CompiledRuleset:
        """The user's ruleset (the shared default one if they changed nothing)."""
        if not stored.rules and not stored.enabled:
            return self.default_ruleset
        merged = merge_push_rules(USER_PLACEHOLDER, stored)
        return self._build(merged)

    def _build(self, merged: dict[str, list[JsonDict]]) -> CompiledRuleset:
        out: list[CompiledRule] = []
        for kind in RULE_KINDS:
            for rule in merged[kind]:
                if not rule.get("enabled", True):
                    continue
                shared = self._default_rules.get((kind, rule["rule_id"])) if rule.get("default") else None
                if shared is not None:
                    actions = parse_actions(rule.get("actions") or [])
                    if actions != shared.actions:
                        shared = attrs.evolve(shared, actions=actions)
                    out.append(shared)
                else:
                    out.append(compile_rule(kind, copy.deepcopy(rule)))
        return CompiledRuleset(out)
