"""The Event value type: its compact, cache-held form."""

from __future__ import annotations

import copy
from typing import Any

from twisted.trial import unittest

from matrixd.events.event import Event
from matrixd.events.hashing import add_content_hash, check_content_hash, compute_event_id, event_reference
from matrixd.events.redaction import prune_event
from matrixd.events.room_versions import RoomVersions


def _signed_pdu() -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "room_id": "!r:a.example",
        "sender": "@u:a.example",
        "content": {"body": "hi", "msgtype": "m.text"},
        "prev_events": [["$p:a.example", {"sha256": "cGFyZW50"}]],
        "auth_events": [],
        "depth": 3,
        "origin_server_ts": 1_700_000_000_000,
        "hashes": {"sha256": "aGFzaA"},
        "signatures": {"a.example": {"ed25519:k": "c2ln"}},
        "unsigned": {"age_ts": 1},
    }


class CompactEventTestCase(unittest.TestCase):
    def test_same_event_through_every_accessor(self) -> None:
        """A compact event answers like the event it was made from."""
        pdu = _signed_pdu()
        for version in (RoomVersions.V1, RoomVersions.V10):
            full = Event(copy.deepcopy(pdu), version, event_id="$e:a.example")
            small = Event.compact(copy.deepcopy(pdu), version, "$e:a.example")
            self.assertEqual(small.get_pdu_json(), full.get_pdu_json())
            self.assertEqual(small.hashes, full.hashes)
            self.assertEqual(small.signatures, full.signatures)
            self.assertEqual(small.get("hashes"), pdu["hashes"])
            self.assertIsNone(small.get("nope"))
            self.assertEqual(small.get("nope", 5), 5)
            self.assertTrue(small.has("signatures") and small.has("depth"))
            self.assertFalse(small.has("state_key"))
            self.assertEqual(small.content, full.content)
            self.assertEqual(small.prev_event_ids(), full.prev_event_ids())
            self.assertEqual(event_reference(small), event_reference(full))
            self.assertEqual(prune_event(small).get_pdu_json(), prune_event(full).get_pdu_json())
        self.assertNotIn("hashes", small.get_fields_without_signing())
        self.assertGreater(small.signing_size(), 0)

    def test_hashes_still_check(self) -> None:
        """The content hash and event id computed from a compact event's PDU are unchanged."""
        pdu = _signed_pdu()
        pdu["prev_events"] = ["$p"]
        pdu = add_content_hash(pdu)
        event_id = compute_event_id(pdu, RoomVersions.V10)
        small = Event.compact(copy.deepcopy(pdu), RoomVersions.V10, event_id)
        self.assertTrue(check_content_hash(small.get_pdu_json()))
        self.assertEqual(compute_event_id(small.get_pdu_json(), RoomVersions.V10), event_id)

    def test_without_signing_fields(self) -> None:
        """A PDU with neither field stays as it is."""
        pdu = _signed_pdu()
        del pdu["hashes"], pdu["signatures"]
        small = Event.compact(dict(pdu), RoomVersions.V10, "$e")
        self.assertEqual(small.get_pdu_json(), pdu)
        self.assertEqual(small.signing_size(), 0)
        self.assertEqual(small.hashes, {})
        self.assertFalse(small.has("hashes"))
