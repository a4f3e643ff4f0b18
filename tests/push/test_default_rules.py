"""The server-default ruleset against a table of sample events (modules/push.md "Predefined rules")."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from matrixd.push.conditions import EventFacts, MentionIndex, UserFacts
from matrixd.push.evaluator import RulesetCompiler, parse_actions
from matrixd.storage.push_rules import StoredPushRule, UserPushRules

ME = "@me:test"
SOUND = {"set_tweak": "sound", "value": "default"}
HIGHLIGHT = {"set_tweak": "highlight"}


def msg(body: str = "hi", msgtype: str = "m.text", **extra: Any) -> dict[str, Any]:
    return {"type": "m.room.message", "sender": "@other:test", "room_id": "!r:test",
            "content": {"msgtype": msgtype, "body": body, **extra}}


def ev(event_type: str, content: dict[str, Any], state_key: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": event_type, "sender": "@other:test", "room_id": "!r:test", "content": content}
    if state_key is not None:
        out["state_key"] = state_key
    return out


# (name, event, member count, sender power, expected actions)
TABLE: list[tuple[str, dict[str, Any], int, float, list[Any]]] = [
    ("message in a group", msg(), 5, 0, ["notify"]),
    ("message one-to-one", msg(), 2, 0, ["notify", SOUND]),
    ("notice", msg(msgtype="m.notice"), 2, 0, []),
    ("user mention", msg(**{"m.mentions": {"user_ids": [ME]}}), 5, 0, ["notify", SOUND, HIGHLIGHT]),
    ("someone else's mention", msg(**{"m.mentions": {"user_ids": ["@x:test"]}}), 5, 0, ["notify"]),
    # The legacy rules (spec v1.7-v1.16) for content without m.mentions; any m.mentions turns them off.
    ("body naming my localpart", msg(body="@me:test hello"), 5, 0, ["notify", SOUND, HIGHLIGHT]),
    ("localpart on word boundaries only", msg(body="meme time"), 5, 0, ["notify"]),
    ("localpart any case", msg(body="hey ME!"), 5, 0, ["notify", SOUND, HIGHLIGHT]),
    ("localpart with empty m.mentions", msg(body="@me:test hello", **{"m.mentions": {}}), 5, 0, ["notify"]),
    ("body naming my display name", msg(body="hi Mister Me."), 5, 0, ["notify", SOUND, HIGHLIGHT]),
    ("display name inside a word", msg(body="hi Mister Meow"), 5, 0, ["notify"]),
    ("display name with m.mentions", msg(body="hi mister me", **{"m.mentions": {"user_ids": []}}), 5, 0,
     ["notify"]),
    ("@room by moderator", msg(body="@room lunch"), 5, 50, ["notify", HIGHLIGHT]),
    ("@room by nobody", msg(body="@room lunch"), 5, 0, ["notify"]),
    ("@room inside a word", msg(body="x@roomy"), 5, 50, ["notify"]),
    ("@room with m.mentions", msg(body="@room lunch", **{"m.mentions": {}}), 5, 50, ["notify"]),
    ("room mention by moderator", msg(**{"m.mentions": {"room": True}}), 5, 50, ["notify", HIGHLIGHT]),
    ("room mention by nobody", msg(**{"m.mentions": {"room": True}}), 5, 0, ["notify"]),
    ("encrypted in a group", ev("m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2"}), 5, 0, ["notify"]),
    ("encrypted one-to-one", ev("m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2"}), 2, 0,
     ["notify", SOUND]),
    ("tombstone", ev("m.room.tombstone", {"body": "moved", "replacement_room": "!n:test"}, ""), 5, 100,
     ["notify", HIGHLIGHT]),
    ("tombstone with a state key", ev("m.room.tombstone", {"body": "x"}, "x"), 5, 100, []),
    ("reaction", ev("m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$e",
                                                    "key": "+"}}), 2, 0, []),
    ("call invite", ev("m.call.invite", {"call_id": "c", "version": 1}), 5, 0,
     ["notify", {"set_tweak": "sound", "value": "ring"}]),
    ("invite for me", ev("m.room.member", {"membership": "invite"}, ME), 5, 0, ["notify", SOUND]),
    ("invite for someone else", ev("m.room.member", {"membership": "invite"}, "@x:test"), 5, 0, []),
    ("join", ev("m.room.member", {"membership": "join"}, "@x:test"), 5, 0, []),
    ("server ACL", ev("m.room.server_acl", {"allow": ["*"]}, ""), 5, 100, []),
    ("edit", msg(**{"m.relates_to": {"rel_type": "m.replace", "event_id": "$e"}}), 2, 0, []),
    ("topic", ev("m.room.topic", {"topic": "t"}, ""), 5, 50, []),
]


class DefaultRulesTests(unittest.TestCase):
    def setUp(self) -> None:
        self.compiler = RulesetCompiler()

    def evaluate(self, event: dict[str, Any], members: int, power: float,
                 stored: UserPushRules | None = None) -> list[Any]:
        ruleset = self.compiler.compile(ME, stored or UserPushRules())
        facts = EventFacts(event=event, member_count=members, sender_power=power,
                           notification_levels={"room": 50})
        return list(ruleset.evaluate(facts, UserFacts(ME, "Mister Me")).actions)

    def test_table(self) -> None:
        """Each sample event gets the actions of the first default rule that matches it."""
        for name, event, members, power, expected in TABLE:
            self.assertEqual(self.evaluate(event, members, power), expected, name)

    def test_master_rule_enabled_silences_everything(self) -> None:
        """Enabling .m.rule.master (no actions) stops every notification."""
        stored = UserPushRules(enabled={("override", ".m.rule.master"): True})
        for name, event, members, power, _ in TABLE:
            self.assertEqual(self.evaluate(event, members, power, stored), [], name)

    def test_changed_default_actions_and_own_rules(self) -> None:
        """A default rule's stored actions apply; a user's room rule beats the underrides."""
        stored = UserPushRules(rules=[
            StoredPushRule("underride", ".m.rule.message", 0, None, None, ["dont_notify"]),
            StoredPushRule("room", "!loud:test", 1, None, None, ["notify", SOUND]),
            StoredPushRule("content", "cake", 1, None, "cake*", ["notify", HIGHLIGHT]),
        ])
        self.assertEqual(self.evaluate(msg(), 5, 0, stored), ["dont_notify"])
        loud = {**msg(), "room_id": "!loud:test"}
        self.assertEqual(self.evaluate(loud, 5, 0, stored), ["notify", SOUND])
        self.assertEqual(self.evaluate(msg(body="I love cakes"), 5, 0, stored), ["notify", HIGHLIGHT])
        self.assertEqual(self.evaluate(msg(body="pancakes"), 5, 0, stored), ["dont_notify"])

    def test_parse_actions(self) -> None:
        """notify and coalesce notify; highlight needs a true (or absent) value; dont_notify does nothing."""
        self.assertTrue(parse_actions(["coalesce"]).notify)
        self.assertFalse(parse_actions(["dont_notify"]).notify)
        self.assertTrue(parse_actions([HIGHLIGHT]).highlight)
        self.assertFalse(parse_actions([{"set_tweak": "highlight", "value": False}]).highlight)

    def test_shared_conditions_memoised_per_event(self) -> None:
        """Users with default rules share compiled conditions; results stay per-user for mentions."""
        ruleset = self.compiler.compile(ME, UserPushRules())
        self.assertIs(ruleset, self.compiler.compile("@x:test", UserPushRules()))
        facts = EventFacts(event=msg(**{"m.mentions": {"user_ids": [ME]}}), member_count=5, sender_power=0,
                           notification_levels={"room": 50})
        self.assertTrue(ruleset.evaluate(facts, UserFacts(ME)).highlight)
        self.assertFalse(ruleset.evaluate(facts, UserFacts("@x:test")).highlight)

    def test_rules_indexed_by_type_keep_glob_semantics(self) -> None:
        """Rules pinned to a literal type match it case-insensitively; wildcard and non-ASCII types still work."""
        stored = UserPushRules(rules=[
            StoredPushRule("override", "shout", 0, [{"kind": "event_match", "key": "type",
                                                     "pattern": "ORG.Example.SHOUT"}], None, ["notify", HIGHLIGHT]),
            StoredPushRule("override", "any_example", 1, [{"kind": "event_match", "key": "type",
                                                           "pattern": "org.example.*"}], None, ["notify"]),
            StoredPushRule("override", "accented", 2, [{"kind": "event_match", "key": "type",
                                                        "pattern": "org.exämple"}], None, ["notify", SOUND]),
        ])
        self.assertEqual(self.evaluate(ev("org.example.shout", {}), 5, 0, stored), ["notify", HIGHLIGHT])
        self.assertEqual(self.evaluate(ev("Org.Example.Shout", {}), 5, 0, stored), ["notify", HIGHLIGHT])
        self.assertEqual(self.evaluate(ev("org.example.whisper", {}), 5, 0, stored), ["notify"])
        self.assertEqual(self.evaluate(ev("ORG.EXÄMPLE", {}), 5, 0, stored), ["notify", SOUND])
        self.assertEqual(self.evaluate(ev("org.other", {}), 5, 0, stored), [])
        # The default rules pinned to m.room.message still apply to it whatever its case.
        self.assertEqual(self.evaluate({**msg(), "type": "M.Room.Message"}, 5, 0), ["notify"])


class LegacyMentionCandidatesTests(unittest.TestCase):
    """The legacy mention conditions narrow the users evaluated one by one, never dropping a match."""

    def setUp(self) -> None:
        self.ruleset = RulesetCompiler().compile(ME, UserPushRules())
        self.names = {"@me:test": "Mister Me", "@ann:test": "Ann", "@x.y:test": None, "@other:test": "Ó Brádaigh",
                      "@bot:test": "~Bot~"}

    def facts(self, content: dict[str, Any], index: bool = True) -> EventFacts:
        event = {"type": "m.room.message", "sender": "@z:test", "room_id": "!r:test", "content": content}
        return EventFacts(event=event, member_count=5, sender_power=0, notification_levels={"room": 50},
                          mentions=MentionIndex.build(self.names, self.names) if index else None)

    def test_candidates_are_a_superset_of_matches(self) -> None:
        bodies = ["hi mister me", "ANN?", "x.y: ping", "xx.y", "ó brádaigh!", "nothing", "annex", "me",
                  "ann ✓", "héllo ~bot~", "a~BOT~b", "mister me ✓"]
        for body in bodies:
            facts = self.facts({"msgtype": "m.text", "body": body})
            candidates = self.ruleset.candidates(facts)
            assert candidates is not None
            for user, name in self.names.items():
                highlight = self.ruleset.evaluate(facts, UserFacts(user, name)).highlight
                if highlight:
                    self.assertIn(user.lower(), candidates, body)
                if user.lower() not in candidates:
                    self.assertEqual(self.ruleset.evaluate(facts, UserFacts(user, name)),
                                     self.ruleset.base(facts), body)
        self.assertEqual(self.ruleset.candidates(self.facts({"msgtype": "m.text", "body": "ann"})), {"@ann:test"})
        self.assertEqual(self.ruleset.candidates(self.facts({"msgtype": "m.text", "body": "x.y"})), {"@x.y:test"})
        self.assertEqual(self.ruleset.candidates(self.facts({"msgtype": "m.text", "body": "ann ✓ ~bot~"})),
                         {"@ann:test", "@bot:test"})

    def test_without_index_or_with_mentions(self) -> None:
        """No index: anyone may match a body; m.mentions: only the mentioned users are candidates."""
        self.assertIsNone(self.ruleset.candidates(self.facts({"body": "ann"}, index=False)))
        self.assertEqual(self.ruleset.candidates(self.facts({"body": "ann", "m.mentions": {}}, index=False)),
                         frozenset())
        self.assertEqual(self.ruleset.candidates(self.facts({"body": "ann", "m.mentions": {"user_ids": [ME]}})),
                         {ME})
        self.assertEqual(self.ruleset.candidates(self.facts({"membership": "join"}, index=False)), frozenset())
