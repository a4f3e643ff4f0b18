"""The legacy mention rules (spec v1.7-v1.16) end to end: /pushrules, highlights at persistence, /sync counts.

``.m.rule.contains_display_name``, ``.m.rule.contains_user_name`` and
``.m.rule.roomnotif`` highlight messages without ``m.mentions``; any
``m.mentions`` (even empty) turns them off, as MSC3952 / spec v1.7 say.
"""

from __future__ import annotations

from typing import Any

from tests.sync.helpers import SyncTestCase

SOUND = {"set_tweak": "sound", "value": "default"}
HIGHLIGHT = {"set_tweak": "highlight"}


class LegacyRulesTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")
        self.carol, self.ctok = self.user("carol")
        self.room = self.create_room(self.alice, preset="public_chat")
        self.join(self.bob, self.room)
        self.join(self.carol, self.room)
        ch = self.request("PUT", f"/profile/{self.bob}/displayname", self.btok, {"displayname": "Bobby Tables"})
        self.assertEqual(ch.code, 200, ch.json_body)

    def say(self, sender: str, body: str, **extra: Any) -> str:
        return self.send(sender, self.room, content={"msgtype": "m.text", "body": body, **extra})

    def highlights(self, token: str) -> list[str]:
        page = self.request("GET", "/notifications?only=highlight", token).json_body
        return [n["event"]["content"]["body"] for n in page["notifications"]]

    def unread(self, token: str) -> dict[str, int]:
        counts: dict[str, int] = self.sync(token)["rooms"]["join"][self.room]["unread_notifications"]
        return counts

    def test_rules_listed_in_place(self) -> None:
        """The three rules are listed where v1.16 put them, with its fields; the pattern is the user's localpart."""
        ruleset = self.request("GET", "/pushrules/", self.btok).json_body["global"]
        override = [r["rule_id"] for r in ruleset["override"]]
        self.assertEqual(override.index(".m.rule.contains_display_name"), override.index(".m.rule.is_user_mention") + 1)
        self.assertEqual(override.index(".m.rule.roomnotif"), override.index(".m.rule.is_room_mention") + 1)
        rules = {r["rule_id"]: r for r in ruleset["override"]}
        self.assertEqual(rules[".m.rule.contains_display_name"], {
            "rule_id": ".m.rule.contains_display_name", "default": True, "enabled": True,
            "conditions": [{"kind": "contains_display_name"}], "actions": ["notify", SOUND, HIGHLIGHT]})
        self.assertEqual(rules[".m.rule.roomnotif"], {
            "rule_id": ".m.rule.roomnotif", "default": True, "enabled": True,
            "conditions": [{"kind": "event_match", "key": "content.body", "pattern": "@room"},
                           {"kind": "sender_notification_permission", "key": "room"}],
            "actions": ["notify", HIGHLIGHT]})
        self.assertEqual(ruleset["content"], [{
            "rule_id": ".m.rule.contains_user_name", "default": True, "enabled": True, "pattern": "bob",
            "actions": ["notify", SOUND, HIGHLIGHT]}])
        carol_content = self.request("GET", "/pushrules/global/content/.m.rule.contains_user_name", self.ctok)
        self.assertEqual(carol_content.json_body["pattern"], "carol")

    def test_display_name_and_localpart_highlight_without_mentions(self) -> None:
        """Naming bob's display name or localpart highlights him only; with m.mentions (even empty) it does not."""
        self.say(self.alice, "ping bobby tables!")
        self.say(self.alice, "hey bob, lunch?")
        self.say(self.alice, "bobsleigh")  # not on a word boundary
        self.say(self.alice, "hey bob again", **{"m.mentions": {}})
        self.say(self.alice, "Bobby Tables again", **{"m.mentions": {"user_ids": [self.carol]}})
        self.assertEqual(self.highlights(self.btok), ["hey bob, lunch?", "ping bobby tables!"])
        self.assertEqual(self.highlights(self.ctok), ["Bobby Tables again"])
        self.assertEqual(self.unread(self.btok), {"notification_count": 5, "highlight_count": 2})
        self.assertEqual(self.unread(self.ctok), {"notification_count": 5, "highlight_count": 1})
        notes = self.request("GET", "/notifications", self.btok).json_body["notifications"]
        self.assertEqual(notes[-1]["actions"], ["notify", SOUND, HIGHLIGHT])

    def test_members_profiles_read_only_for_a_body(self) -> None:
        """Display names only ever match a string body: an event without one (a membership, a topic) is
        evaluated without reading every member's profile; a message after it still finds bob's name."""
        store = self.hs.components.core.stores.current_state
        real = store.get_joined_member_profiles
        reads: list[str] = []

        async def counting(room_id: str) -> Any:
            reads.append(room_id)
            return await real(room_id)

        store.get_joined_member_profiles = counting  # type: ignore[method-assign]
        self.send(self.alice, self.room, event_type="m.room.topic", content={"topic": "lunch"}, state_key="")
        self.send(self.alice, self.room, event_type="org.example.ping", content={"n": 1})
        self.assertEqual(reads, [])
        self.say(self.alice, "ping bobby tables!")
        self.assertEqual(reads, [self.room])
        self.assertEqual(self.highlights(self.btok), ["ping bobby tables!"])

    def test_room_notification_needs_power(self) -> None:
        """'@room' from the creator (power 100) highlights everyone; from bob (power 0) nobody; not with m.mentions."""
        self.say(self.alice, "@room meeting now")
        self.say(self.bob, "@room I have no power")
        self.say(self.alice, "@room not legacy", **{"m.mentions": {}})
        self.assertEqual(self.highlights(self.ctok), ["@room meeting now"])
        self.assertEqual(self.highlights(self.btok), ["@room meeting now"])
        self.assertEqual(self.unread(self.ctok), {"notification_count": 3, "highlight_count": 1})

    def test_rules_can_be_disabled(self) -> None:
        """Each legacy rule can be turned off through /pushrules/.../enabled."""
        for path in ("override/.m.rule.contains_display_name", "content/.m.rule.contains_user_name",
                     "override/.m.rule.roomnotif"):
            ch = self.request("PUT", f"/pushrules/global/{path}/enabled", self.btok, {"enabled": False})
            self.assertEqual(ch.code, 200, ch.json_body)
            self.assertIs(self.request("GET", f"/pushrules/global/{path}/enabled", self.btok).json_body["enabled"],
                          False)
        self.say(self.alice, "bobby tables")
        self.say(self.alice, "bob")
        self.say(self.alice, "@room")
        self.assertEqual(self.highlights(self.btok), [])
        self.assertEqual(self.unread(self.btok), {"notification_count": 3, "highlight_count": 0})
        self.assertEqual(self.highlights(self.ctok), ["@room"])  # carol keeps the defaults

    def test_display_name_change_is_seen(self) -> None:
        """A new display name applies to the next message (the room's cached names follow its state)."""
        self.say(self.alice, "Captain B")
        ch = self.request("PUT", f"/profile/{self.bob}/displayname", self.btok, {"displayname": "Captain B"})
        self.assertEqual(ch.code, 200, ch.json_body)
        self.say(self.alice, "captain b, report")
        self.say(self.alice, "Bobby Tables?")
        self.assertEqual(self.highlights(self.btok), ["captain b, report"])
