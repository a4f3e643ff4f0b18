"""Push rule conditions, one kind at a time (modules/push.md "Conditions")."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from matrixd.push.conditions import (
    EventFacts,
    UserFacts,
    compile_condition,
    glob_matches,
    split_dotted_key,
    validate_condition,
)

ALICE = UserFacts("@alice:test", "Alice Liddell")


def facts(event: dict[str, Any], members: int = 5, sender_power: float = 0,
          levels: dict[str, int] | None = None) -> EventFacts:
    return EventFacts(event=event, member_count=members, sender_power=sender_power,
                      notification_levels=levels if levels is not None else {"room": 50})


def matches(cond: dict[str, Any], event: dict[str, Any], user: UserFacts = ALICE, **kw: Any) -> bool:
    return compile_condition(cond).matches(facts(event, **kw), user)


class GlobTests(unittest.TestCase):
    def test_whole_value(self) -> None:
        """Outside content.body a glob must match the whole value, case-insensitively; ? is one character."""
        self.assertTrue(glob_matches("lunc?*", "Lunch plans"))
        self.assertTrue(glob_matches("lunc?*", "LUNCH"))
        self.assertFalse(glob_matches("lunc?*", " lunch"))
        self.assertFalse(glob_matches("lunc?*", "lunc"))
        self.assertTrue(glob_matches("m.room.*", "m.room.message"))
        self.assertFalse(glob_matches("m.room", "m.room.message"))

    def test_regex_characters_are_literal(self) -> None:
        """Characters special to regexes match themselves."""
        self.assertTrue(glob_matches("a.b+c", "A.B+C"))
        self.assertFalse(glob_matches("a.b", "axb"))

    def test_word_boundaries(self) -> None:
        """content.body matching finds the pattern between word boundaries anywhere in the body."""
        self.assertTrue(glob_matches("ex*ple", "An example event.", word_boundary=True))
        self.assertTrue(glob_matches("ex*ple", "exple", word_boundary=True))
        self.assertTrue(glob_matches("ex*ple", "An exciting triple-whammy", word_boundary=True))
        self.assertFalse(glob_matches("cake", "cupcakes", word_boundary=True))
        self.assertFalse(glob_matches("cake", "cake_lover", word_boundary=True))
        self.assertTrue(glob_matches("cake", "I like CAKE!", word_boundary=True))


class DottedKeyTests(unittest.TestCase):
    def test_escapes(self) -> None:
        """Dots split the path; \\. is a literal dot and \\\\ a literal backslash."""
        self.assertEqual(split_dotted_key("content.body"), ("content", "body"))
        self.assertEqual(split_dotted_key("content.m\\.mentions.user_ids"), ("content", "m.mentions", "user_ids"))
        self.assertEqual(split_dotted_key("content.a\\\\.b"), ("content", "a\\", "b"))
        self.assertEqual(split_dotted_key("content.a\\b"), ("content", "a\\b"))


class ConditionTests(unittest.TestCase):
    def test_event_match(self) -> None:
        """event_match needs a string value: absent, null or non-string values never match, even '*'."""
        cond = {"kind": "event_match", "key": "content.topic", "pattern": "*"}
        self.assertTrue(matches(cond, {"content": {"topic": ""}}))
        self.assertFalse(matches(cond, {"content": {}}))
        self.assertFalse(matches(cond, {"content": {"topic": None}}))
        self.assertFalse(matches(cond, {"content": {"topic": 3}}))
        body = {"kind": "event_match", "key": "content.body", "pattern": "alice"}
        self.assertTrue(matches(body, {"content": {"body": "hi Alice!"}}))

    def test_event_property_is(self) -> None:
        """event_property_is compares exactly without casting (true is not 1 or "true")."""
        cond = {"kind": "event_property_is", "key": "content.m\\.federate", "value": True}
        self.assertTrue(matches(cond, {"content": {"m.federate": True}}))
        self.assertFalse(matches(cond, {"content": {"m.federate": "true"}}))
        self.assertFalse(matches(cond, {"content": {"m.federate": 1}}))
        self.assertFalse(matches(cond, {"content": {}}))
        null = {"kind": "event_property_is", "key": "content.x", "value": None}
        self.assertTrue(matches(null, {"content": {"x": None}}))
        self.assertFalse(matches(null, {"content": {}}))
        one = {"kind": "event_property_is", "key": "content.x", "value": 1}
        self.assertFalse(matches(one, {"content": {"x": True}}))
        self.assertFalse(matches(one, {"content": {"x": [1]}}))

    def test_event_property_contains(self) -> None:
        """event_property_contains needs an array holding exactly the value."""
        cond = {"kind": "event_property_contains", "key": "content.alt_aliases", "value": "#myroom:example.com"}
        self.assertTrue(matches(cond, {"content": {"alt_aliases": ["#a:b", "#myroom:example.com"]}}))
        self.assertFalse(matches(cond, {"content": {"alt_aliases": [":example.com"]}}))
        self.assertFalse(matches(cond, {"content": {"alt_aliases": "#myroom:example.com"}}))
        self.assertFalse(matches(cond, {"content": {}}))

    def test_contains_display_name(self) -> None:
        """contains_display_name looks for the owner's room display name between word boundaries."""
        cond = {"kind": "contains_display_name"}
        self.assertTrue(matches(cond, {"content": {"body": "hey alice liddell, lunch?"}}))
        self.assertFalse(matches(cond, {"content": {"body": "hey alice liddells"}}))
        self.assertFalse(matches(cond, {"content": {"body": "hey"}}))
        self.assertFalse(matches(cond, {"content": {"body": "Alice Liddell"}}, UserFacts("@a:test", None)))

    def test_room_member_count(self) -> None:
        """room_member_count supports ==, <, >, <=, >= and a bare number meaning ==."""
        cases = [("2", 2, True), ("2", 3, False), ("==2", 2, True), ("<3", 2, True), ("<3", 3, False),
                 (">3", 4, True), (">3", 3, False), ("<=3", 3, True), (">=3", 3, True), (">=3", 2, False)]
        for spec, members, expected in cases:
            self.assertEqual(matches({"kind": "room_member_count", "is": spec}, {}, members=members), expected,
                             (spec, members))
        self.assertFalse(matches({"kind": "room_member_count", "is": "lots"}, {}, members=2))

    def test_sender_notification_permission(self) -> None:
        """The sender needs the notifications level of the key (room: 50 unless the power levels say)."""
        cond = {"kind": "sender_notification_permission", "key": "room"}
        self.assertTrue(matches(cond, {}, sender_power=50))
        self.assertFalse(matches(cond, {}, sender_power=49))
        self.assertTrue(matches(cond, {}, sender_power=10, levels={"room": 10}))
        self.assertTrue(matches(cond, {}, sender_power=float("inf")))

    def test_unknown_kind_never_matches(self) -> None:
        """A condition kind the server does not know never matches."""
        self.assertFalse(matches({"kind": "org.example.magic"}, {"content": {}}))
        self.assertFalse(matches({"kind": "event_match", "key": "type"}, {"type": "m.room.message"}))

    def test_validation(self) -> None:
        """Client-supplied conditions are checked for their parameters; unknown kinds are accepted."""
        self.assertIsNone(validate_condition({"kind": "event_match", "key": "type", "pattern": "x"}))
        self.assertIsNone(validate_condition({"kind": "org.example.magic"}))
        self.assertIsNotNone(validate_condition({"kind": "event_match", "key": "type"}))
        self.assertIsNotNone(validate_condition({"kind": "room_member_count", "is": "x2"}))
        self.assertIsNotNone(validate_condition({"kind": "event_property_is", "key": "a", "value": [1]}))
        self.assertIsNotNone(validate_condition("event_match"))
