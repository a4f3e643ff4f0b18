"""Content hashes, reference hashes, event ids and v12 room ids."""

from __future__ import annotations

import copy
from typing import Any

from canonicaljson import encode_canonical_json
from twisted.trial import unittest
from unpaddedbase64 import encode_base64

from matrixd.api.errors import EventFormatError
from matrixd.events.event import Event
from matrixd.events.hashing import (
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    compute_room_id_for_create_event,
    content_hash_and_size,
    event_reference,
    room_id_from_create_event_id,
)
from matrixd.events.redaction import prune_event_dict
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersions
from tests.events import vectors

# Event ids of the appendix's signed minimal event with depth 1, cross-checked
# against an independent implementation; chosen so the hash has '+' in it.
V3_ID_DEPTH_1 = "$Rqq28Xl5TkTYFtoKggVAJyNX98aVoSI+dtQX8NZ3+kc"
V4_ID_DEPTH_1 = "$Rqq28Xl5TkTYFtoKggVAJyNX98aVoSI-dtQX8NZ3-kc"
# The same event at depth 3: v11 no longer keeps `origin`, so its id differs.
V4_ID = "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc"
V11_ID = "$70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I"
# The v1 reference hash of that event with event_id "$0:domain".
V1_REFERENCE_HASH = "6HSQpqJvtNSS8TBtk00eLTYaKOhiLqUiVfD/rpeqU1s"
V12_CREATE_ID = "$nGK6SXKCW5tf_-nWPCNeVk_MjldXzpRX5ZlToEXFYdo"


def _v12_create() -> dict[str, Any]:
    return {
        "type": "m.room.create",
        "state_key": "",
        "sender": "@alice:example.org",
        "content": {"room_version": "12"},
        "depth": 1,
        "origin_server_ts": 1700000000000,
        "hashes": {"sha256": "x"},
        "signatures": {},
        "prev_events": [],
        "auth_events": [],
    }


class ContentHashTest(unittest.TestCase):
    def test_spec_vectors(self) -> None:
        """The content hashes of the appendix's two events match the spec."""
        self.assertEqual(
            encode_base64(compute_content_hash(vectors.minimal_event())),
            vectors.MINIMAL_EVENT_SIGNED["hashes"]["sha256"],
        )
        self.assertEqual(
            encode_base64(compute_content_hash(vectors.redactable_event())),
            vectors.REDACTABLE_EVENT_SIGNED["hashes"]["sha256"],
        )

    def test_excludes_unsigned_signatures_hashes(self) -> None:
        """unsigned, signatures and hashes do not affect the content hash."""
        base = compute_content_hash(vectors.minimal_event())
        ev = vectors.minimal_event()
        ev["unsigned"] = {"age": 5}
        ev["signatures"] = {"other": {"ed25519:x": "y"}}
        ev["hashes"] = {"sha256": "zzz", "sha512": "q"}
        self.assertEqual(compute_content_hash(ev), base)

    def test_add_content_hash_is_pure_and_keeps_other_algorithms(self) -> None:
        """add_content_hash returns a copy and keeps other hash algorithms."""
        ev = vectors.minimal_event()
        ev["hashes"] = {"sha512": "keep"}
        before = copy.deepcopy(ev)
        out = add_content_hash(ev)
        self.assertEqual(ev, before)
        self.assertEqual(out["hashes"]["sha512"], "keep")
        self.assertEqual(out["hashes"]["sha256"], vectors.MINIMAL_EVENT_SIGNED["hashes"]["sha256"])

    def test_check_content_hash(self) -> None:
        """A matching hash passes (padded too); tampering or a malformed hash fails."""
        self.assertTrue(check_content_hash(vectors.MINIMAL_EVENT_SIGNED))
        padded = dict(vectors.MINIMAL_EVENT_SIGNED, hashes={"sha256": vectors.MINIMAL_EVENT_SIGNED["hashes"]["sha256"] + "="})
        self.assertTrue(check_content_hash(padded))
        tampered = dict(vectors.REDACTABLE_EVENT_SIGNED, content={"body": "changed"})
        self.assertFalse(check_content_hash(tampered))
        for bad in (None, {}, {"sha256": 5}, {"sha256": "!!!notbase64"}, {"sha256": "é"}, "str"):
            self.assertFalse(check_content_hash(dict(vectors.MINIMAL_EVENT_SIGNED, hashes=bad)), bad)

    def test_content_hash_and_size_match_separate_encodings(self) -> None:
        """One encoding gives the content hash and the whole PDU's canonical size, whichever of the
        unhashed keys are there (none, some, all; even with nothing else in the object)."""
        base = dict(vectors.REDACTABLE_EVENT_SIGNED, content={"body": "héllo ☃ \u2028", "n": [1, {"z": None}]})
        cases: list[dict[str, Any]] = [
            base,
            {k: v for k, v in base.items() if k not in ("unsigned", "signatures", "hashes")},
            dict(base, unsigned={"age": 5, "x": "ü"}),
            {k: v for k, v in base.items() if k != "hashes"},
            {"signatures": {"a": {"ed25519:1": "sig"}}},
            {"hashes": {"sha256": "abc"}, "unsigned": {}},
            {},
        ]
        for pdu in cases:
            content_hash, size = content_hash_and_size(pdu)
            self.assertEqual(content_hash, compute_content_hash(pdu), pdu)
            self.assertEqual(size, len(encode_canonical_json(pdu)), pdu)
        self.assertTrue(check_content_hash(base | {"hashes": {"sha256": encode_base64(
            content_hash_and_size(base)[0])}}, content_hash_and_size(base)[0]))
        self.assertFalse(check_content_hash(vectors.MINIMAL_EVENT_SIGNED, b"not the hash"))


class EventIdTest(unittest.TestCase):
    def _signed(self, **changes: Any) -> dict[str, Any]:
        ev = copy.deepcopy(vectors.MINIMAL_EVENT_SIGNED)
        ev.update(changes)
        return ev

    def test_v3_standard_and_v4_urlsafe_base64(self) -> None:
        """v3 ids use standard unpadded base64, v4+ the URL-safe alphabet."""
        ev = self._signed(depth=1)
        self.assertEqual(compute_event_id(ev, RoomVersions.V3), V3_ID_DEPTH_1)
        self.assertEqual(compute_event_id(ev, RoomVersions.V4), V4_ID_DEPTH_1)
        self.assertEqual(compute_event_id(ev, RoomVersions.V10), V4_ID_DEPTH_1)

    def test_v11_redaction_changes_the_id(self) -> None:
        """The reference hash follows each version's redaction (v11 drops `origin`)."""
        ev = self._signed()
        self.assertEqual(compute_event_id(ev, RoomVersions.V4), V4_ID)
        self.assertEqual(compute_event_id(ev, RoomVersions.V11), V11_ID)
        self.assertEqual(compute_event_id(ev, RoomVersions.V12), V11_ID)

    def test_id_ignores_unsigned_signatures_and_redactable_content(self) -> None:
        """The id is stable across unsigned/signature changes and redaction of the event."""
        ev = self._signed(content={"body": "hello"})
        eid = compute_event_id(ev, RoomVersions.V9)
        bare = self._signed(content={"body": "hello"}, unsigned={}, signatures={})
        self.assertEqual(compute_event_id(bare, RoomVersions.V9), eid)
        self.assertEqual(compute_event_id(prune_event_dict(RoomVersions.V9, ev), RoomVersions.V9), eid)
        self.assertEqual(Event(ev, RoomVersions.V9).event_id, eid)

    def test_id_covers_the_content_hash(self) -> None:
        """Changing the content hash (e.g. a different message) changes the id."""
        ev = self._signed(hashes={"sha256": "something else"})
        self.assertNotEqual(compute_event_id(ev, RoomVersions.V4), V4_ID)

    def test_v1_ids_are_carried(self) -> None:
        """v1/v2 ids come from the event_id field; a missing one is a format error."""
        ev = self._signed(event_id="$0:domain")
        self.assertEqual(compute_event_id(ev, RoomVersions.V1), "$0:domain")
        self.assertEqual(Event(ev, RoomVersions.V2).event_id, "$0:domain")
        with self.assertRaises(EventFormatError):
            compute_event_id(self._signed(), RoomVersions.V1)

    def test_v1_reference_hash_and_citation(self) -> None:
        """v1 events are cited as [id, {sha256: reference hash}], later ones by id."""
        ev = self._signed(event_id="$0:domain")
        self.assertEqual(encode_base64(compute_reference_hash(RoomVersions.V1, ev)), V1_REFERENCE_HASH)
        self.assertEqual(event_reference(Event(ev, RoomVersions.V1)), ["$0:domain", {"sha256": V1_REFERENCE_HASH}])
        self.assertEqual(event_reference(Event(self._signed(), RoomVersions.V4)), V4_ID)


class V12RoomIdTest(unittest.TestCase):
    def test_room_id_is_create_event_hash(self) -> None:
        """A v12 room id is "!" + the create event's reference hash."""
        create = _v12_create()
        self.assertEqual(compute_event_id(create, RoomVersions.V12), V12_CREATE_ID)
        self.assertEqual(compute_room_id_for_create_event(RoomVersions.V12, create), "!" + V12_CREATE_ID[1:])
        self.assertEqual(Event(create, RoomVersions.V12).room_id, "!" + V12_CREATE_ID[1:])
        self.assertEqual(room_id_from_create_event_id(V12_CREATE_ID), "!" + V12_CREATE_ID[1:])

    def test_only_for_hash_room_ids(self) -> None:
        """Deriving a room id in a pre-v12 version, or from a non-event id, is refused."""
        with self.assertRaises(ValueError):
            compute_room_id_for_create_event(RoomVersions.V11, _v12_create())
        with self.assertRaises(ValueError):
            room_id_from_create_event_id("!notanevent")

    def test_every_hash_version_matches_between_event_and_function(self) -> None:
        """Event.event_id (via the registered hook) equals compute_event_id in every version."""
        for rv in KNOWN_ROOM_VERSIONS.values():
            ev = self._pdu(rv.event_format == 1)
            self.assertEqual(Event(ev, rv).event_id, compute_event_id(ev, rv))

    def _pdu(self, with_id: bool) -> dict[str, Any]:
        ev = copy.deepcopy(vectors.MINIMAL_EVENT_SIGNED)
        if with_id:
            ev["event_id"] = "$1:domain"
        return ev
