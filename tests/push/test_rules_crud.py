"""PUT/DELETE /pushrules: validation, ordering, enabled/actions, and the m.push_rules sync update."""

from __future__ import annotations

from typing import Any

from tests.sync.helpers import SyncTestCase


class PushRulesCrudTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")

    def put(self, kind: str, rule_id: str, body: Any, query: str = "") -> Any:
        return self.request("PUT", f"/pushrules/global/{kind}/{rule_id}{query}", self.atok, body)

    def own_ids(self, kind: str) -> list[str]:
        rules = self.request("GET", "/pushrules/global/", self.atok).json_body[kind]
        return [r["rule_id"] for r in rules if not r["default"]]

    def test_create_read_delete(self) -> None:
        """A created content rule is enabled, readable, then deleted (and 404 afterwards)."""
        ch = self.put("content", "cake", {"pattern": "cake*lie", "actions": ["notify"]})
        self.assertEqual((ch.code, ch.json_body), (200, {}))
        rule = self.request("GET", "/pushrules/global/content/cake", self.atok).json_body
        self.assertEqual(rule, {"rule_id": "cake", "default": False, "enabled": True, "pattern": "cake*lie",
                                "actions": ["notify"]})
        self.assertEqual(self.request("DELETE", "/pushrules/global/content/cake", self.atok).code, 200)
        ch = self.request("GET", "/pushrules/global/content/cake", self.atok)
        self.assertEqual(ch.code, 404)
        ch = self.request("DELETE", "/pushrules/global/content/cake", self.atok)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (404, "M_NOT_FOUND"))

    def test_ordering(self) -> None:
        """New rules go first; before/after place them next to another user rule; updates keep their place."""
        for rid in ("a", "b"):
            self.put("override", rid, {"conditions": [], "actions": []})
        self.assertEqual(self.own_ids("override"), ["b", "a"])
        self.put("override", "c", {"conditions": [], "actions": []}, "?after=a")
        self.assertEqual(self.own_ids("override"), ["b", "a", "c"])
        self.put("override", "d", {"conditions": [], "actions": []}, "?before=a")
        self.assertEqual(self.own_ids("override"), ["b", "d", "a", "c"])
        self.put("override", "b", {"conditions": [], "actions": ["notify"]})
        self.assertEqual(self.own_ids("override"), ["b", "d", "a", "c"])
        self.put("override", "b", {"conditions": [], "actions": []}, "?after=c")
        self.assertEqual(self.own_ids("override"), ["d", "a", "c", "b"])
        rules = self.request("GET", "/pushrules/global/", self.atok).json_body["override"]
        self.assertEqual(rules[0]["rule_id"], ".m.rule.master")
        self.assertEqual([r["rule_id"] for r in rules[1:5]], ["d", "a", "c", "b"])

    def test_bad_requests_change_nothing(self) -> None:
        """Reserved ids, bad anchors, bad actions/conditions/patterns are 400 and store nothing."""
        cases = [
            ("override", ".m.rule.mine", {"actions": []}, "", "M_INVALID_PARAM"),
            ("override", "x", {"actions": []}, "?before=nope", "M_UNKNOWN"),
            ("override", "x", {"actions": []}, "?after=.m.rule.master", "M_INVALID_PARAM"),
            ("override", "x", {"actions": ["explode"]}, "", "M_INVALID_PARAM"),
            ("override", "x", {"actions": "notify"}, "", "M_INVALID_PARAM"),
            ("override", "x", {}, "", "M_INVALID_PARAM"),
            ("override", "x", {"actions": [], "conditions": [{"kind": "event_match"}]}, "", "M_INVALID_PARAM"),
            ("override", "x", {"actions": [], "conditions": {}}, "", "M_INVALID_PARAM"),
            ("content", "x", {"actions": []}, "", "M_INVALID_PARAM"),
            ("sideways", "x", {"actions": []}, "", "M_INVALID_PARAM"),
        ]
        for kind, rid, body, query, errcode in cases:
            ch = self.put(kind, rid, body, query)
            self.assertEqual((ch.code, ch.json_body.get("errcode")), (400, errcode), (kind, rid, body, query))
        for kind in ("override", "content"):
            self.assertEqual(self.own_ids(kind), [])

    def test_enabled_and_actions(self) -> None:
        """enabled and actions can be set on default and own rules; unknown rules are 404."""
        ch = self.request("PUT", "/pushrules/global/override/.m.rule.master/enabled", self.atok, {"enabled": True})
        self.assertEqual(ch.code, 200)
        ch = self.request("GET", "/pushrules/global/override/.m.rule.master/enabled", self.atok)
        self.assertEqual(ch.json_body, {"enabled": True})
        ch = self.request("PUT", "/pushrules/global/underride/.m.rule.message/actions", self.atok,
                          {"actions": ["dont_notify"]})
        self.assertEqual(ch.code, 200)
        ch = self.request("GET", "/pushrules/global/underride/.m.rule.message/actions", self.atok)
        self.assertEqual(ch.json_body, {"actions": ["dont_notify"]})
        self.put("room", "!r:test", {"actions": ["notify"]})
        self.request("PUT", "/pushrules/global/room/!r:test/enabled", self.atok, {"enabled": False})
        rule = self.request("GET", "/pushrules/global/room/!r:test", self.atok).json_body
        self.assertFalse(rule["enabled"])
        ch = self.request("PUT", "/pushrules/global/room/nope/enabled", self.atok, {"enabled": False})
        self.assertEqual(ch.code, 404)
        ch = self.request("PUT", "/pushrules/global/room/!r:test/enabled", self.atok, {"enabled": "yes"})
        self.assertEqual(ch.code, 400)
        ch = self.request("PUT", "/pushrules/global/room/nope/actions", self.atok, {"actions": []})
        self.assertEqual(ch.code, 404)

    def test_default_rules_cannot_be_deleted(self) -> None:
        """DELETE of a server-default rule is refused."""
        ch = self.request("DELETE", "/pushrules/global/override/.m.rule.master", self.atok)
        self.assertEqual(ch.code, 400)
        ch = self.request("DELETE", "/pushrules/global/override/.m.rule.nothing", self.atok)
        self.assertEqual(ch.code, 404)

    def test_change_reaches_sync_and_wakes_it(self) -> None:
        """A rule change wakes a long-polling /sync, which carries the new m.push_rules."""
        since = self.sync(self.atok)["next_batch"]
        channel = self.request("GET", self.sync_path(since, timeout=30000), self.atok, await_result=False)
        self.hs.advance(1)
        self.put("sender", "@spam:test", {"actions": ["dont_notify"]})
        self.hs.advance(0.1)
        channel.await_result()
        body = channel.json_body
        push = [e for e in body["account_data"]["events"] if e["type"] == "m.push_rules"]
        self.assertEqual(len(push), 1)
        self.assertEqual([r["rule_id"] for r in push[0]["content"]["global"]["sender"]], ["@spam:test"])
        again = self.sync(self.atok, body["next_batch"])
        self.assertEqual([e for e in again["account_data"]["events"] if e["type"] == "m.push_rules"], [])
