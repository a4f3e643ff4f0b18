"""The redaction algorithm of every room version, for every event type it treats specially."""

from __future__ import annotations

import copy
from typing import Any

from twisted.trial import unittest

from matrixd.events.event import Event
from matrixd.events.redaction import prune_event, prune_event_dict
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion, RoomVersions

# Content with every key any version keeps for the type, plus one nobody keeps.
FULL_CONTENT: dict[str, dict[str, Any]] = {
    "m.room.create": {"creator": "@a:x", "room_version": "9", "m.federate": False, "predecessor": {"room_id": "!o:x"}},
    "m.room.member": {
        "membership": "join",
        "displayname": "Alice",
        "join_authorised_via_users_server": "@b:y",
        "third_party_invite": {"display_name": "a@x", "signed": {"mxid": "@a:x", "token": "t", "signatures": {}}},
    },
    "m.room.join_rules": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": "!s:x"}], "x": 1},
    "m.room.power_levels": {
        "ban": 50,
        "events": {"m.room.name": 50},
        "events_default": 0,
        "invite": 0,
        "kick": 50,
        "redact": 50,
        "state_default": 50,
        "users": {"@a:x": 100},
        "users_default": 0,
        "notifications": {"room": 50},
    },
    "m.room.history_visibility": {"history_visibility": "joined", "x": 1},
    "m.room.aliases": {"aliases": ["#a:x"], "x": 1},
    "m.room.redaction": {"redacts": "$target", "reason": "spam"},
    "m.room.message": {"body": "hi", "msgtype": "m.text"},
    "m.room.topic": {"topic": "t"},
}

PL_V1 = ["ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"]

# Content keys kept, per type, for the rules of v1, v6, v8, v9 and v11.
KEPT: dict[str, dict[str, list[str]]] = {
    "1": {
        "m.room.create": ["creator"],
        "m.room.member": ["membership"],
        "m.room.join_rules": ["join_rule"],
        "m.room.power_levels": PL_V1,
        "m.room.history_visibility": ["history_visibility"],
        "m.room.aliases": ["aliases"],
    },
    "6": {
        "m.room.create": ["creator"],
        "m.room.member": ["membership"],
        "m.room.join_rules": ["join_rule"],
        "m.room.power_levels": PL_V1,
        "m.room.history_visibility": ["history_visibility"],
    },
    "8": {
        "m.room.create": ["creator"],
        "m.room.member": ["membership"],
        "m.room.join_rules": ["join_rule", "allow"],
        "m.room.power_levels": PL_V1,
        "m.room.history_visibility": ["history_visibility"],
    },
    "9": {
        "m.room.create": ["creator"],
        "m.room.member": ["membership", "join_authorised_via_users_server"],
        "m.room.join_rules": ["join_rule", "allow"],
        "m.room.power_levels": PL_V1,
        "m.room.history_visibility": ["history_visibility"],
    },
    "11": {
        "m.room.create": list(FULL_CONTENT["m.room.create"]),
        "m.room.member": ["membership", "join_authorised_via_users_server"],
        "m.room.join_rules": ["join_rule", "allow"],
        "m.room.power_levels": PL_V1 + ["invite"],
        "m.room.history_visibility": ["history_visibility"],
        "m.room.redaction": ["redacts"],
    },
}
# Which rule set applies to each version.
RULES_OF = {
    "1": "1", "2": "1", "3": "1", "4": "1", "5": "1", "6": "6",
    "7": "6", "8": "8", "9": "9", "10": "9", "11": "11", "12": "11",
}

TOP_LEVEL_ALWAYS = {
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
    "signatures", "depth", "prev_events", "auth_events", "origin_server_ts",
}
TOP_LEVEL_BEFORE_V11 = {"origin", "membership", "prev_state"}


def _event(event_type: str) -> dict[str, Any]:
    return {
        "event_id": "$e:x",
        "type": event_type,
        "room_id": "!r:x",
        "sender": "@a:x",
        "state_key": "",
        "content": copy.deepcopy(FULL_CONTENT[event_type]),
        "hashes": {"sha256": "h"},
        "signatures": {"x": {"ed25519:1": "s"}},
        "depth": 4,
        "prev_events": [],
        "prev_state": [],
        "auth_events": [],
        "origin": "x",
        "origin_server_ts": 7,
        "membership": "join",
        "unsigned": {"age": 1},
        "redacts": "$target",
        "custom": {"not": "kept"},
    }


def _expected_content(rv: RoomVersion, event_type: str) -> dict[str, Any]:
    keys = KEPT[RULES_OF[rv.identifier]].get(event_type, [])
    content = {k: FULL_CONTENT[event_type][k] for k in keys}
    if rv.identifier in ("11", "12") and event_type == "m.room.member":
        content["third_party_invite"] = {"signed": FULL_CONTENT[event_type]["third_party_invite"]["signed"]}
    return content


class PruneEventDictTest(unittest.TestCase):
    def test_content_kept_per_version_and_type(self) -> None:
        """Every version keeps exactly the spec's content keys for each special type."""
        for rv in KNOWN_ROOM_VERSIONS.values():
            for event_type in FULL_CONTENT:
                pruned = prune_event_dict(rv, _event(event_type))
                self.assertEqual(pruned["content"], _expected_content(rv, event_type), f"v{rv.identifier} {event_type}")

    def test_top_level_keys_per_version(self) -> None:
        """origin, membership and prev_state survive before v11 only; unsigned/redacts/custom never."""
        for rv in KNOWN_ROOM_VERSIONS.values():
            pruned = prune_event_dict(rv, _event("m.room.message"))
            expected = TOP_LEVEL_ALWAYS | (set() if rv.identifier in ("11", "12") else TOP_LEVEL_BEFORE_V11)
            self.assertEqual(set(pruned), expected, f"v{rv.identifier}")

    def test_v11_redaction_keeps_content_redacts_only(self) -> None:
        """From v11 a redaction keeps content.redacts; before, the top-level redacts is lost."""
        self.assertEqual(prune_event_dict(RoomVersions.V11, _event("m.room.redaction"))["content"], {"redacts": "$target"})
        pruned_v10 = prune_event_dict(RoomVersions.V10, _event("m.room.redaction"))
        self.assertEqual(pruned_v10["content"], {})
        self.assertNotIn("redacts", pruned_v10)

    def test_v11_third_party_invite_keeps_only_signed(self) -> None:
        """v11 keeps third_party_invite as an object holding only `signed` (empty if none)."""
        ev = _event("m.room.member")
        ev["content"]["third_party_invite"] = {"display_name": "x"}
        self.assertEqual(prune_event_dict(RoomVersions.V11, ev)["content"]["third_party_invite"], {})
        ev["content"]["third_party_invite"] = "not an object"
        self.assertNotIn("third_party_invite", prune_event_dict(RoomVersions.V11, ev)["content"])
        self.assertNotIn("third_party_invite", prune_event_dict(RoomVersions.V10, _event("m.room.member"))["content"])

    def test_v12_create_without_room_id(self) -> None:
        """A v12 create event (no room_id) keeps its whole content and gains no room_id."""
        ev = _event("m.room.create")
        del ev["room_id"]
        ev["content"]["additional_creators"] = ["@b:y"]
        pruned = prune_event_dict(RoomVersions.V12, ev)
        self.assertNotIn("room_id", pruned)
        self.assertEqual(pruned["content"], ev["content"])

    def test_input_not_mutated_and_idempotent(self) -> None:
        """Pruning leaves the input alone, and pruning twice changes nothing more."""
        for rv in KNOWN_ROOM_VERSIONS.values():
            for event_type in FULL_CONTENT:
                ev = _event(event_type)
                before = copy.deepcopy(ev)
                once = prune_event_dict(rv, ev)
                self.assertEqual(ev, before)
                self.assertEqual(prune_event_dict(rv, once), once)

    def test_malformed_content(self) -> None:
        """A non-object content or type is pruned to empty content without error."""
        ev = _event("m.room.member")
        ev["content"] = ["not", "an", "object"]
        self.assertEqual(prune_event_dict(RoomVersions.V9, ev)["content"], {})
        ev = _event("m.room.member")
        ev["type"] = 5
        self.assertEqual(prune_event_dict(RoomVersions.V9, ev)["content"], {})


class PruneEventTest(unittest.TestCase):
    def test_pruned_event_keeps_identity(self) -> None:
        """prune_event keeps id, room version and a copy of the internal metadata."""
        ev = _event("m.room.message")
        del ev["event_id"]
        event = Event(ev, RoomVersions.V10)
        event.internal_metadata.stream_ordering = 42
        event.internal_metadata.outlier = True
        pruned = prune_event(event)
        self.assertEqual(pruned.event_id, event.event_id)
        self.assertIs(pruned.room_version, RoomVersions.V10)
        self.assertEqual(pruned.content, {})
        self.assertEqual(pruned.internal_metadata.stream_ordering, 42)
        self.assertTrue(pruned.internal_metadata.outlier)
        self.assertIsNot(pruned.internal_metadata, event.internal_metadata)
        self.assertEqual(event.content, FULL_CONTENT["m.room.message"])

    def test_pruned_redaction_v11_still_knows_target(self) -> None:
        """A redacted v11 redaction still reports what it redacts."""
        pruned = prune_event(Event(_event("m.room.redaction"), RoomVersions.V11))
        self.assertEqual(pruned.redacts, "$target")
