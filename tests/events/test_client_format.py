"""The client-server event format produced from PDUs."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from matrixd.events.event import Event
from matrixd.events.redaction import prune_event
from matrixd.events.room_versions import RoomVersion, RoomVersions
from matrixd.events.client_format import serialize_event

V4_ID = "$Rqq28Xl5TkTYFtoKggVAJyNX98aVoSI-dtQX8NZ3-kc"


def _pdu(rv: RoomVersion, **changes: Any) -> dict[str, Any]:
    pdu: dict[str, Any] = {
        "type": "m.room.message",
        "sender": "@alice:example.org",
        "room_id": "!room:example.org",
        "content": {"body": "hi"},
        "depth": 3,
        "origin_server_ts": 1000,
        "hashes": {"sha256": "abc"},
        "signatures": {"example.org": {"ed25519:1": "sig"}},
        "prev_events": [],
        "auth_events": [],
    }
    if rv.event_format == 1:
        pdu["event_id"] = "$msg:example.org"
    pdu.update(changes)
    return pdu


class SerializeEventTest(unittest.TestCase):
    def test_client_event_fields(self) -> None:
        """A message becomes a ClientEvent with age computed from origin_server_ts."""
        ev = Event(_pdu(RoomVersions.V10), RoomVersions.V10)
        out = serialize_event(ev, now_ms=1500)
        self.assertEqual(
            out,
            {
                "event_id": ev.event_id,
                "type": "m.room.message",
                "content": {"body": "hi"},
                "sender": "@alice:example.org",
                "origin_server_ts": 1000,
                "room_id": "!room:example.org",
                "unsigned": {"age": 500},
            },
        )

    def test_without_room_id_and_state_key(self) -> None:
        """ClientEventWithoutRoomID omits room_id; state events carry state_key (even empty)."""
        ev = Event(_pdu(RoomVersions.V10, type="m.room.topic", state_key="", content={"topic": "t"}), RoomVersions.V10)
        out = serialize_event(ev, 1000, include_room_id=False)
        self.assertNotIn("room_id", out)
        self.assertEqual(out["state_key"], "")
        self.assertNotIn("state_key", serialize_event(Event(_pdu(RoomVersions.V10), RoomVersions.V10), 1000))

    def test_unsigned_sources(self) -> None:
        """age uses age_ts when present; invite state passes; server-private keys do not; extras merge."""
        stripped = [{"type": "m.room.name", "state_key": "", "sender": "@a:x", "content": {"name": "n"}}]
        ev = Event(
            _pdu(RoomVersions.V10, unsigned={"age_ts": 1200, "invite_room_state": stripped, "secret": 1}),
            RoomVersions.V10,
        )
        out = serialize_event(ev, 1500, extra_unsigned={"transaction_id": "txn", "prev_content": {"a": 1}})
        self.assertEqual(
            out["unsigned"],
            {"age": 300, "invite_room_state": stripped, "transaction_id": "txn", "prev_content": {"a": 1}},
        )

    def test_redacted_because(self) -> None:
        """A redacted event carries its redaction, serialised the same way, in unsigned."""
        rv = RoomVersions.V11
        original = Event(_pdu(rv), rv)
        redaction = Event(_pdu(rv, type="m.room.redaction", content={"redacts": original.event_id}, origin_server_ts=1200), rv)
        out = serialize_event(prune_event(original), 2000, include_room_id=False, redacted_because=redaction)
        self.assertEqual(out["content"], {})
        because = out["unsigned"]["redacted_because"]
        self.assertEqual(because["event_id"], redaction.event_id)
        self.assertEqual(because["unsigned"], {"age": 800})
        self.assertNotIn("room_id", because)

    def test_redaction_redacts_in_both_places(self) -> None:
        """Redactions expose redacts at top level and in content in old and new versions."""
        v10 = Event(_pdu(RoomVersions.V10, type="m.room.redaction", redacts=V4_ID, content={"reason": "r"}), RoomVersions.V10)
        out = serialize_event(v10, 1000)
        self.assertEqual(out["redacts"], V4_ID)
        self.assertEqual(out["content"], {"reason": "r", "redacts": V4_ID})
        self.assertEqual(v10.content, {"reason": "r"})
        v11 = Event(_pdu(RoomVersions.V11, type="m.room.redaction", content={"redacts": V4_ID}), RoomVersions.V11)
        out = serialize_event(v11, 1000)
        self.assertEqual(out["redacts"], V4_ID)
        self.assertEqual(out["content"], {"redacts": V4_ID})

    def test_v12_create_room_id_and_v1_ids(self) -> None:
        """The v12 create event gets its derived room_id; v1 events keep their carried id."""
        pdu = _pdu(RoomVersions.V12, type="m.room.create", state_key="", content={"room_version": "12"})
        del pdu["room_id"]
        create = Event(pdu, RoomVersions.V12)
        self.assertEqual(serialize_event(create, 1000)["room_id"], "!" + create.event_id[1:])
        self.assertEqual(serialize_event(Event(_pdu(RoomVersions.V1), RoomVersions.V1), 1000)["event_id"], "$msg:example.org")

    def test_federation_format(self) -> None:
        """as_client_event=False returns the PDU as is, with this server's unsigned."""
        pdu = _pdu(RoomVersions.V10, unsigned={"age_ts": 900, "secret": 1})
        out = serialize_event(Event(pdu, RoomVersions.V10), 1000, as_client_event=False)
        self.assertEqual(out, dict(pdu, unsigned={"age": 100}))
        self.assertEqual(pdu["unsigned"], {"age_ts": 900, "secret": 1})
