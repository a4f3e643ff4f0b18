"""Locally built events are valid, correctly hashed and signed in every room version."""

from __future__ import annotations

import re
from typing import Any, Optional

from twisted.trial import unittest
from unpaddedbase64 import encode_base64

from matrixd.crypto.keys import generate_signing_key, get_verify_key, key_id
from matrixd.events.builder import create_local_event, random_event_id
from matrixd.events.event import Event
from matrixd.events.hashing import check_content_hash, compute_event_id, compute_reference_hash
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion, RoomVersions
from matrixd.events.signing import check_event_hashes_and_signatures, verify_event_signature
from matrixd.events.validation import validate_pdu

SERVER = "example.org"
KEY = generate_signing_key("k1")
KEYS = {SERVER: {key_id(KEY): get_verify_key(KEY)}}
ALICE = "@alice:example.org"

ID_PATTERN = {
    1: re.compile(r"^\$[A-Za-z]{18}:example\.org$"),
    2: re.compile(r"^\$[A-Za-z0-9+/]{43}$"),
    3: re.compile(r"^\$[A-Za-z0-9_-]{43}$"),
}


def build(
    rv: RoomVersion,
    event_type: str,
    content: dict[str, Any],
    *,
    room_id: Optional[str],
    prev: list[Event],
    auth: list[Event],
    state_key: Optional[str] = None,
    redacts: Optional[str] = None,
    unsigned: Optional[dict[str, Any]] = None,
) -> Event:
    return create_local_event(
        rv,
        event_type=event_type,
        sender=ALICE,
        room_id=room_id,
        content=content,
        state_key=state_key,
        prev_events=prev,
        auth_events=auth,
        depth=max((e.depth for e in prev), default=0) + 1,
        origin_server_ts=1700000000000,
        server_name=SERVER,
        signing_key=KEY,
        redacts=redacts,
        unsigned=unsigned,
    )


def build_room(rv: RoomVersion) -> list[Event]:
    """create, join, power levels, message, redaction of the message."""
    create_content: dict[str, Any] = {"room_version": rv.identifier}
    if not rv.implicit_room_creator:
        create_content["creator"] = ALICE
    hashed_room_id = rv.room_id_is_create_event_hash
    create = build(rv, "m.room.create", create_content, room_id=None if hashed_room_id else "!r:example.org",
                   prev=[], auth=[], state_key="")
    room_id = create.room_id
    base_auth = [] if hashed_room_id else [create]
    join = build(rv, "m.room.member", {"membership": "join"}, room_id=room_id, prev=[create], auth=base_auth, state_key=ALICE)
    pl = build(rv, "m.room.power_levels", {"users": {ALICE: 100}}, room_id=room_id, prev=[join],
               auth=base_auth + [join], state_key="")
    msg = build(rv, "m.room.message", {"body": "hello", "msgtype": "m.text"}, room_id=room_id, prev=[pl],
                auth=base_auth + [join, pl], unsigned={"transaction_id": "t1"})
    redaction = build(rv, "m.room.redaction", {"reason": "oops"}, room_id=room_id, prev=[msg],
                      auth=base_auth + [join, pl], redacts=msg.event_id)
    return [create, join, pl, msg, redaction]


class CreateLocalEventTest(unittest.TestCase):
    def test_every_version_valid_and_verifiable(self) -> None:
        """Built events pass validation, the content hash and the signature check in v1-v12."""
        for rv in KNOWN_ROOM_VERSIONS.values():
            for event in build_room(rv):
                pdu = event.get_pdu_json()
                validate_pdu(rv, pdu)
                self.assertTrue(check_content_hash(pdu))
                verify_event_signature(rv, pdu, SERVER, KEYS[SERVER])
                self.assertEqual(check_event_hashes_and_signatures(rv, pdu, KEYS), pdu)
                self.assertRegex(event.event_id, ID_PATTERN[rv.event_format])
                self.assertEqual(event.event_id, compute_event_id(pdu, rv), f"v{rv.identifier} {event.type}")

    def test_references_per_format(self) -> None:
        """v1/v2 cite [id, {sha256: reference hash}], later versions cite bare ids."""
        for rv in (RoomVersions.V1, RoomVersions.V2):
            create, join, *_ = build_room(rv)
            ref_hash = encode_base64(compute_reference_hash(rv, create.get_pdu_json()))
            self.assertEqual(join.get_pdu_json()["prev_events"], [[create.event_id, {"sha256": ref_hash}]])
            self.assertEqual(join.prev_event_ids(), [create.event_id])
        create, join, *_ = build_room(RoomVersions.V10)
        self.assertEqual(join.get_pdu_json()["prev_events"], [create.event_id])
        self.assertNotIn("event_id", join.get_pdu_json())

    def test_v12_create_and_room_id(self) -> None:
        """The v12 create event has no room_id; the room id is ! + its event id hash."""
        create, join, *_ = build_room(RoomVersions.V12)
        self.assertNotIn("room_id", create.get_pdu_json())
        self.assertEqual(create.room_id, "!" + create.event_id[1:])
        self.assertEqual(join.room_id, create.room_id)
        self.assertEqual(join.auth_event_ids(), [])

    def test_redacts_placement(self) -> None:
        """redacts goes to content from v11 and to the top level before."""
        for rv in KNOWN_ROOM_VERSIONS.values():
            *_, msg, redaction = build_room(rv)
            pdu = redaction.get_pdu_json()
            self.assertEqual(redaction.redacts, msg.event_id)
            if rv.redacts_in_content:
                self.assertEqual(pdu["content"], {"reason": "oops", "redacts": msg.event_id})
                self.assertNotIn("redacts", pdu)
            else:
                self.assertEqual(pdu["redacts"], msg.event_id)
                self.assertNotIn("redacts", pdu["content"])

    def test_unsigned_not_signed_and_inputs_untouched(self) -> None:
        """unsigned rides along unsigned; caller's content and unsigned are not mutated."""
        rv = RoomVersions.V11
        create = build_room(rv)[0]
        content = {"reason": "x"}
        unsigned = {"transaction_id": "t"}
        ev = build(rv, "m.room.redaction", content, room_id=create.room_id, prev=[create], auth=[create],
                   redacts="$x", unsigned=unsigned)
        self.assertEqual(content, {"reason": "x"})
        self.assertEqual(ev.unsigned, {"transaction_id": "t"})
        pdu = dict(ev.get_pdu_json(), unsigned={"age": 1})
        self.assertEqual(compute_event_id(pdu, rv), ev.event_id)
        verify_event_signature(rv, pdu, SERVER, KEYS[SERVER])

    def test_room_id_argument_checked(self) -> None:
        """A v12 create with a room_id, or any other event without one, is refused."""
        with self.assertRaises(ValueError):
            build(RoomVersions.V12, "m.room.create", {}, room_id="!x:y", prev=[], auth=[], state_key="")
        with self.assertRaises(ValueError):
            build(RoomVersions.V11, "m.room.create", {}, room_id=None, prev=[], auth=[], state_key="")
        with self.assertRaises(ValueError):
            build(RoomVersions.V12, "m.room.message", {}, room_id=None, prev=[], auth=[])

    def test_random_event_ids_unique(self) -> None:
        """v1-format ids are random per call and name the server."""
        ids = {random_event_id("s.org") for _ in range(200)}
        self.assertEqual(len(ids), 200)
        self.assertTrue(all(i.startswith("$") and i.endswith(":s.org") for i in ids))
