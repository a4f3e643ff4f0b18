"""PDU format validation: what each room version accepts and every rejection."""

from __future__ import annotations

from typing import Any, Callable

from twisted.trial import unittest

from matrixd.api.errors import BadJsonError, Codes, EventFormatError
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion, RoomVersions
from matrixd.events.validation import (
    MAX_PDU_SIZE,
    EventTooLargeError,
    check_canonical_json_values,
    is_valid_event_sender,
    validate_client_event_fields,
    validate_pdu,
)

V3_ID = "$Rqq28Xl5TkTYFtoKggVAJyNX98aVoSI+dtQX8NZ3+kc"
V4_ID = "$Rqq28Xl5TkTYFtoKggVAJyNX98aVoSI-dtQX8NZ3-kc"
V12_ROOM = "!Rqq28Xl5TkTYFtoKggVAJyNX98aVoSI-dtQX8NZ3-kc"


def good_pdu(rv: RoomVersion, **changes: Any) -> dict[str, Any]:
    """A well-formed (unsigned-for-real) message PDU of ``rv``."""
    ref: Any
    if rv.event_format == 1:
        ref = ["$p:example.org", {"sha256": "abc"}]
    else:
        ref = V3_ID if rv.event_format == 2 else V4_ID
    pdu: dict[str, Any] = {
        "type": "m.room.message",
        "sender": "@alice:example.org",
        "room_id": V12_ROOM if rv.room_id_is_create_event_hash else "!room:example.org",
        "content": {"body": "hi", "n": 2**53 - 1},
        "depth": 12,
        "origin_server_ts": 1700000000000,
        "hashes": {"sha256": "abc"},
        "signatures": {"example.org": {"ed25519:1": "sig"}},
        "prev_events": [ref],
        "auth_events": [ref],
        "unsigned": {"age": 3},
    }
    if rv.event_format == 1:
        pdu["event_id"] = "$abc:example.org"
    pdu.update(changes)
    return pdu


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda pdu: pdu.pop(key)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda pdu: pdu.__setitem__(key, value)


def _content(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda pdu: pdu["content"].__setitem__(key, value)


# Rejected in every room version.
BAD_EVERYWHERE: dict[str, Callable[[dict[str, Any]], None]] = {
    **{f"missing {k}": _without(k) for k in (
        "type", "sender", "content", "depth", "origin_server_ts", "hashes", "signatures", "prev_events", "auth_events", "room_id"
    )},
    "type not str": _set("type", 5),
    "type too long": _set("type", "t" * 256),
    "type too long in bytes": _set("type", "é" * 128),
    "state_key too long": _set("state_key", "s" * 256),
    "state_key not str": _set("state_key", None),
    "sender too long": _set("sender", "@" + "a" * 250 + ":example.org"),
    "sender no sigil": _set("sender", "alice:example.org"),
    "sender no domain": _set("sender", "@alice"),
    "sender bad domain": _set("sender", "@alice:exa mple.org"),
    "sender NUL": _set("sender", "@al\x00ice:example.org"),
    "content not object": _set("content", []),
    "depth negative": _set("depth", -1),
    "depth too big": _set("depth", 2**63),
    "depth bool": _set("depth", True),
    "depth str": _set("depth", "1"),
    "origin_server_ts float": _set("origin_server_ts", 1.5),
    "origin_server_ts str": _set("origin_server_ts", "1"),
    "hashes not object": _set("hashes", "abc"),
    "hashes no sha256": _set("hashes", {"sha512": "x"}),
    "signatures not object": _set("signatures", []),
    "signatures not nested": _set("signatures", {"example.org": "sig"}),
    "signature not str": _set("signatures", {"example.org": {"ed25519:1": 5}}),
    "unsigned not object": _set("unsigned", "x"),
    "prev_events not list": _set("prev_events", "x"),
    "too many prev_events": lambda pdu: pdu.__setitem__("prev_events", pdu["prev_events"] * 21),
    "too many auth_events": lambda pdu: pdu.__setitem__("auth_events", pdu["auth_events"] * 11),
    "prev_event not an id": _set("prev_events", ["nope"]),
    "too large": _content("body", "x" * MAX_PDU_SIZE),
    "lone surrogate": _content("body", "\ud800"),
    "NaN": _content("n", float("nan")),
    "redacts not str": lambda pdu: pdu.update(type="m.room.redaction", redacts=5, content={"redacts": 5}),
}

# Rejected only from v6 (strict canonical JSON).
BAD_FROM_V6: dict[str, Callable[[dict[str, Any]], None]] = {
    "float in content": _content("n", 1.5),
    "int too big": _content("n", 2**53),
    "int too small": _content("n", -(2**53)),
    "nested float": _content("nested", {"a": [1, {"b": 0.0}]}),
    "depth above 2**53-1": _set("depth", 2**53),
}


class ValidatePduTest(unittest.TestCase):
    def test_good_events_accepted_in_every_version(self) -> None:
        """A well-formed message and state event pass in each version."""
        for rv in KNOWN_ROOM_VERSIONS.values():
            validate_pdu(rv, good_pdu(rv))
            validate_pdu(rv, good_pdu(rv, type="m.room.topic", state_key="", content={"topic": "t"}))
            validate_pdu(rv, good_pdu(rv, prev_events=good_pdu(rv)["prev_events"] * 20, auth_events=[]))
            validate_pdu(rv, good_pdu(rv, depth=0, sender="@:example.org"))

    def test_bad_everywhere(self) -> None:
        """Each malformation is rejected in every version."""
        for rv in KNOWN_ROOM_VERSIONS.values():
            for name, mutate in BAD_EVERYWHERE.items():
                pdu = good_pdu(rv)
                mutate(pdu)
                with self.assertRaises(EventFormatError, msg=f"v{rv.identifier}: {name}"):
                    validate_pdu(rv, pdu)

    def test_strict_canonical_json_from_v6(self) -> None:
        """Floats and out-of-range integers pass before v6 and fail from v6."""
        for rv in KNOWN_ROOM_VERSIONS.values():
            for name, mutate in BAD_FROM_V6.items():
                pdu = good_pdu(rv)
                mutate(pdu)
                if rv.strict_canonicaljson:
                    with self.assertRaises(EventFormatError, msg=f"v{rv.identifier}: {name}"):
                        validate_pdu(rv, pdu)
                else:
                    validate_pdu(rv, pdu)

    def test_not_an_object(self) -> None:
        """A PDU that is not a JSON object is rejected."""
        with self.assertRaises(EventFormatError):
            validate_pdu(RoomVersions.V10, ["x"])

    def test_size_limit_boundary(self) -> None:
        """Exactly 65536 bytes of canonical JSON passes, one more byte fails with M_TOO_LARGE."""
        from canonicaljson import encode_canonical_json

        pdu = good_pdu(RoomVersions.V10, content={"body": ""})
        pdu["content"]["body"] = "x" * (MAX_PDU_SIZE - len(encode_canonical_json(pdu)))
        self.assertEqual(len(encode_canonical_json(pdu)), MAX_PDU_SIZE)
        validate_pdu(RoomVersions.V10, pdu)
        pdu["content"]["body"] += "x"
        with self.assertRaises(EventTooLargeError) as cm:
            validate_pdu(RoomVersions.V10, pdu)
        self.assertEqual((cm.exception.code, cm.exception.errcode), (413, Codes.TOO_LARGE))

    def test_field_limit_boundary(self) -> None:
        """255-byte type and state_key pass; 256 fail as too large."""
        validate_pdu(RoomVersions.V10, good_pdu(RoomVersions.V10, type="t" * 255, state_key="s" * 255))
        with self.assertRaises(EventTooLargeError):
            validate_pdu(RoomVersions.V10, good_pdu(RoomVersions.V10, state_key="s" * 256))

    def test_v1_event_ids_and_references(self) -> None:
        """v1/v2 need an event_id and [id, hashes] references; others need hash ids."""
        for bad in ({"event_id": None}, {"event_id": "$noserver"}, {"prev_events": ["$p:example.org"]},
                    {"auth_events": [["$p:example.org"]]}, {"prev_events": [[5, {}]]}):
            pdu = good_pdu(RoomVersions.V1, **bad)
            if bad.get("event_id", 0) is None:
                del pdu["event_id"]
            with self.assertRaises(EventFormatError, msg=repr(bad)):
                validate_pdu(RoomVersions.V1, pdu)
        # A v4 id is not a valid v3 reference and vice versa.
        with self.assertRaises(EventFormatError):
            validate_pdu(RoomVersions.V3, good_pdu(RoomVersions.V3, prev_events=[V4_ID]))
        with self.assertRaises(EventFormatError):
            validate_pdu(RoomVersions.V4, good_pdu(RoomVersions.V4, prev_events=[V3_ID]))
        with self.assertRaises(EventFormatError):
            validate_pdu(RoomVersions.V4, good_pdu(RoomVersions.V4, prev_events=[["$p:x", {}]]))

    def test_room_ids(self) -> None:
        """Pre-v12 room ids are !opaque:domain; v12 ones are ! + a URL-safe hash."""
        with self.assertRaises(EventFormatError):
            validate_pdu(RoomVersions.V11, good_pdu(RoomVersions.V11, room_id="!nodomain"))
        with self.assertRaises(EventFormatError):
            validate_pdu(RoomVersions.V11, good_pdu(RoomVersions.V11, room_id="#a:example.org"))
        with self.assertRaises(EventFormatError):
            validate_pdu(RoomVersions.V12, good_pdu(RoomVersions.V12, room_id="!room:example.org"))

    def test_v12_create_event_has_no_room_id(self) -> None:
        """The v12 create event (state key "") must omit room_id; others and earlier versions need it."""
        create = good_pdu(RoomVersions.V12, type="m.room.create", state_key="", content={}, prev_events=[], auth_events=[])
        del create["room_id"]
        validate_pdu(RoomVersions.V12, create)
        with self.assertRaises(EventFormatError):
            validate_pdu(RoomVersions.V12, dict(create, room_id=V12_ROOM))
        not_the_create = good_pdu(RoomVersions.V12, type="m.room.create", state_key="x", content={})
        validate_pdu(RoomVersions.V12, not_the_create)
        del not_the_create["room_id"]
        with self.assertRaises(EventFormatError):
            validate_pdu(RoomVersions.V12, not_the_create)
        create11 = good_pdu(RoomVersions.V11, type="m.room.create", state_key="", prev_events=[], auth_events=[])
        del create11["room_id"]
        with self.assertRaises(EventFormatError):
            validate_pdu(RoomVersions.V11, create11)

    def test_redacts_location(self) -> None:
        """A string redacts is accepted where the version puts it."""
        validate_pdu(RoomVersions.V10, good_pdu(RoomVersions.V10, type="m.room.redaction", redacts=V4_ID, content={}))
        validate_pdu(RoomVersions.V11, good_pdu(RoomVersions.V11, type="m.room.redaction", content={"redacts": V4_ID}))


class HelpersTest(unittest.TestCase):
    def test_sender_grammar(self) -> None:
        """Historical localparts are accepted; missing sigil, domain or a NUL are not."""
        for ok in ("@a:example.org", "@A_B!:example.org:8448", "@:example.org", "@é:[::1]", "@x:1.2.3.4"):
            self.assertTrue(is_valid_event_sender(ok), ok)
        for bad in ("a:example.org", "@", "@a", "@a:", "@a\x00:example.org", "@a:bad domain", "@a:example.org:99999"):
            self.assertFalse(is_valid_event_sender(bad), bad)

    def test_canonical_json_values_path(self) -> None:
        """The error names where in the event the bad number is."""
        with self.assertRaises(EventFormatError) as cm:
            check_canonical_json_values({"a": [0, {"b": 1.0}]})
        self.assertIn("event.a[1].b", cm.exception.msg)
        check_canonical_json_values({"a": [True, None, "s", -(2**53) + 1]})


class ClientFieldsTest(unittest.TestCase):
    def test_accepts_ordinary_content(self) -> None:
        """Ordinary client input passes in every version."""
        for rv in KNOWN_ROOM_VERSIONS.values():
            validate_client_event_fields(rv, "m.room.message", None, {"body": "x"})
            validate_client_event_fields(rv, "m.room.topic", "", {"topic": "x"})

    def test_rejections(self) -> None:
        """Oversized fields are 413 M_TOO_LARGE, bad shapes and v6+ floats 400 M_BAD_JSON."""
        rv = RoomVersions.V10
        too_large: list[tuple[Any, Any, Any]] = [
            ("t" * 256, None, {}),
            ("t", "s" * 256, {}),
            ("t", None, {"b": "x" * MAX_PDU_SIZE}),
        ]
        for args in too_large:
            with self.assertRaises(EventTooLargeError):
                validate_client_event_fields(rv, *args)
        malformed: list[tuple[Any, Any, Any]] = [
            (5, None, {}),
            ("t", 5, {}),
            ("t", None, []),
            ("t", None, {"f": 1.5}),
            ("t", None, {"s": "\udc00"}),
        ]
        for args in malformed:
            with self.assertRaises(BadJsonError, msg=repr(args)):
                validate_client_event_fields(rv, *args)
        validate_client_event_fields(RoomVersions.V5, "t", None, {"f": 1.5})
