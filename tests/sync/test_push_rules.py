"""The default push rule set served by GET /pushrules/ (modules/push.md "Predefined rules")."""

from __future__ import annotations

import os
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.sync.helpers import SyncTestCase

SPEC_DEFINITIONS = "/work/shared/matrix-spec/data/api/client-server/definitions"

OVERRIDE_ORDER = [
    ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
    ".m.rule.is_user_mention", ".m.rule.contains_display_name", ".m.rule.is_room_mention", ".m.rule.roomnotif",
    ".m.rule.tombstone", ".m.rule.reaction",
    ".m.rule.room.server_acl", ".m.rule.suppress_edits",
]
UNDERRIDE_ORDER = [
    ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message",
    ".m.rule.encrypted",
]


def ruleset_validator() -> jsonschema.protocols.Validator:
    resources = []
    for name in ("push_ruleset.yaml", "push_rule.yaml", "push_condition.yaml"):
        with open(os.path.join(SPEC_DEFINITIONS, name), encoding="utf-8") as f:
            resources.append((name, Resource.from_contents(yaml.safe_load(f), default_specification=DRAFT202012)))
    registry: Registry[Any] = Registry().with_resources(resources)
    schema = resources[0][1].contents
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, registry=registry)  # type: ignore[no-any-return]


class PushRulesTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")

    def test_default_ruleset_shape(self) -> None:
        """GET /pushrules/ returns every default rule in spec order, valid against push_ruleset.yaml."""
        channel = self.request("GET", "/pushrules/", self.atok)
        self.assertEqual(channel.code, 200)
        ruleset = channel.json_body["global"]
        if os.path.isdir(SPEC_DEFINITIONS):
            ruleset_validator().validate(ruleset)
        self.assertEqual(set(ruleset), {"override", "content", "room", "sender", "underride"})
        self.assertEqual([r["rule_id"] for r in ruleset["override"]], OVERRIDE_ORDER)
        self.assertEqual([r["rule_id"] for r in ruleset["underride"]], UNDERRIDE_ORDER)
        self.assertEqual([r["rule_id"] for r in ruleset["content"]], [".m.rule.contains_user_name"])
        self.assertEqual((ruleset["room"], ruleset["sender"]), ([], []))
        for kind in ("override", "content", "underride"):
            for rule in ruleset[kind]:
                self.assertIs(rule["default"], True)
                self.assertIs(rule["enabled"], rule["rule_id"] != ".m.rule.master")

    def test_user_specific_parts(self) -> None:
        """The invite and mention rules name the requesting user."""
        rules = {r["rule_id"]: r for r in self.request("GET", "/pushrules/global/", self.atok).json_body["override"]}
        invite = rules[".m.rule.invite_for_me"]["conditions"]
        self.assertIn({"key": "state_key", "kind": "event_match", "pattern": self.alice}, invite)
        mention = rules[".m.rule.is_user_mention"]["conditions"][0]
        self.assertEqual(mention["value"], self.alice)
        self.assertEqual(mention["key"], "content.m\\.mentions.user_ids")

    def test_single_rule_enabled_and_actions(self) -> None:
        """One rule, its enabled flag and its actions can be read; unknown rules are 404."""
        channel = self.request("GET", "/pushrules/global/override/.m.rule.master", self.atok)
        self.assertEqual(channel.json_body["rule_id"], ".m.rule.master")
        channel = self.request("GET", "/pushrules/global/override/.m.rule.master/enabled", self.atok)
        self.assertEqual(channel.json_body, {"enabled": False})
        channel = self.request("GET", "/pushrules/global/underride/.m.rule.call/actions", self.atok)
        self.assertEqual(channel.json_body, {"actions": ["notify", {"set_tweak": "sound", "value": "ring"}]})
        channel = self.request("GET", "/pushrules/global/override/nope", self.atok)
        self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"))
        channel = self.request("GET", "/pushrules/global/sideways/.m.rule.master", self.atok)
        self.assertEqual(channel.code, 400)

    def test_in_initial_sync_only(self) -> None:
        """m.push_rules is in the initial sync's account data, not repeated when unchanged."""
        first = self.sync(self.atok, set_presence="offline")
        types = [e["type"] for e in first["account_data"]["events"]]
        self.assertIn("m.push_rules", types)
        again = self.sync(self.atok, since=first["next_batch"], set_presence="offline")
        self.assertEqual(again["account_data"]["events"], [])

    def test_stored_changes_merge(self) -> None:
        """Stored user rules come before defaults (after master); enabled flags and default actions apply."""
        db = self.hs.components.db
        self.hs.run(db.execute(
            "ins", "INSERT INTO push_rules (user_id, kind, rule_id, priority, conditions, pattern, actions)"
            " VALUES (?, 'override', 'mine', 0, '[]', NULL, ?)", self.alice, '["notify"]'))
        self.hs.run(db.execute(
            "ins", "INSERT INTO push_rules (user_id, kind, rule_id, priority, conditions, pattern, actions)"
            " VALUES (?, 'underride', '.m.rule.message', 0, NULL, NULL, '[]')", self.alice))
        self.hs.run(db.execute(
            "ins", "INSERT INTO push_rules_enable (user_id, kind, rule_id, enabled)"
            " VALUES (?, 'override', '.m.rule.master', ?)", self.alice, True))
        ruleset = self.request("GET", "/pushrules/global/", self.atok).json_body
        self.assertEqual([r["rule_id"] for r in ruleset["override"]][:2], [".m.rule.master", "mine"])
        self.assertTrue(ruleset["override"][0]["enabled"])
        self.assertFalse(ruleset["override"][1]["default"])
        message = [r for r in ruleset["underride"] if r["rule_id"] == ".m.rule.message"][0]
        self.assertEqual(message["actions"], [])
