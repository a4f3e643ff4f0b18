"""Event signing and verification, reproducing the spec's signing test vectors."""

from __future__ import annotations

import copy
from typing import Any

from canonicaljson import encode_canonical_json
from signedjson.sign import sign_json
from twisted.trial import unittest

from matrixd.api.errors import SignatureVerifyError
from matrixd.crypto.keys import generate_signing_key, get_verify_key, key_id
from matrixd.events.event import Event
from matrixd.events.hashing import add_content_hash
from matrixd.events.redaction import prune_event_dict
from matrixd.events.room_versions import RoomVersion, RoomVersions
from matrixd.events.signing import (
    check_event_hashes_and_signatures,
    servers_required_to_sign,
    sign_event_dict,
    verify_event_signature,
)
from tests.events import vectors


def _spec_keys() -> dict[str, Any]:
    return {vectors.KEY_ID: get_verify_key(vectors.spec_signing_key())}


class SpecVectorTest(unittest.TestCase):
    def test_json_signing_vectors(self) -> None:
        """The appendix seed and key id yield the spec's JSON signatures."""
        key = vectors.spec_signing_key()
        self.assertEqual(key_id(key), vectors.KEY_ID)
        self.assertEqual(sign_json({}, vectors.SERVER_NAME, key), vectors.EMPTY_SIGNED)
        self.assertEqual(sign_json(dict(vectors.DATA), vectors.SERVER_NAME, key), vectors.DATA_SIGNED)

    def test_minimal_event_signed_byte_for_byte(self) -> None:
        """Hashing then signing the minimal event reproduces the spec output exactly."""
        out = sign_event_dict(
            RoomVersions.V1, add_content_hash(vectors.minimal_event()), vectors.SERVER_NAME, vectors.spec_signing_key()
        )
        self.assertEqual(encode_canonical_json(out), encode_canonical_json(vectors.MINIMAL_EVENT_SIGNED))

    def test_redactable_event_signed_byte_for_byte(self) -> None:
        """Hashing then signing the message event reproduces the spec output exactly."""
        out = sign_event_dict(
            RoomVersions.V1, add_content_hash(vectors.redactable_event()), vectors.SERVER_NAME, vectors.spec_signing_key()
        )
        self.assertEqual(encode_canonical_json(out), encode_canonical_json(vectors.REDACTABLE_EVENT_SIGNED))

    def test_spec_events_verify(self) -> None:
        """Both spec events verify with the spec key, whole and redacted."""
        for ev in (vectors.MINIMAL_EVENT_SIGNED, vectors.REDACTABLE_EVENT_SIGNED):
            verify_event_signature(RoomVersions.V1, ev, "domain", _spec_keys())
            verify_event_signature(RoomVersions.V1, prune_event_dict(RoomVersions.V1, ev), "domain", _spec_keys())


class SignEventDictTest(unittest.TestCase):
    def test_keeps_other_signatures_and_does_not_mutate(self) -> None:
        """Adding a signature keeps the others and leaves the input untouched."""
        ev = add_content_hash(vectors.minimal_event())
        ev["signatures"] = {"other.org": {"ed25519:o": "sig"}, "domain": {"ed25519:old": "s"}}
        before = copy.deepcopy(ev)
        out = sign_event_dict(RoomVersions.V1, ev, "domain", vectors.spec_signing_key())
        self.assertEqual(ev, before)
        self.assertEqual(out["signatures"]["other.org"], {"ed25519:o": "sig"})
        self.assertEqual(set(out["signatures"]["domain"]), {"ed25519:old", "ed25519:1"})

    def test_signature_depends_on_room_version_redaction(self) -> None:
        """v11 signs a different redacted form (no `origin`) than v10."""
        ev = add_content_hash(vectors.minimal_event())
        key = vectors.spec_signing_key()
        s10 = sign_event_dict(RoomVersions.V10, ev, "domain", key)["signatures"]["domain"]["ed25519:1"]
        s11 = sign_event_dict(RoomVersions.V11, ev, "domain", key)["signatures"]["domain"]["ed25519:1"]
        self.assertNotEqual(s10, s11)


class VerifyEventSignatureTest(unittest.TestCase):
    def _signed(self, rv: RoomVersion = RoomVersions.V1) -> dict[str, Any]:
        return sign_event_dict(rv, add_content_hash(vectors.redactable_event()), "domain", vectors.spec_signing_key())

    def test_unprotected_change_keeps_signature(self) -> None:
        """Editing redactable content leaves the signature valid (the hash catches it)."""
        ev = self._signed()
        ev["content"] = {"body": "edited"}
        ev["unsigned"] = {"age": 99}
        verify_event_signature(RoomVersions.V1, ev, "domain", _spec_keys())

    def test_protected_change_breaks_signature(self) -> None:
        """Changing a protected field (or the hash) invalidates the signature."""
        for key, value in (("origin_server_ts", 1), ("sender", "@evil:domain"), ("hashes", {"sha256": "x"})):
            ev = self._signed()
            ev[key] = value
            with self.assertRaises(SignatureVerifyError):
                verify_event_signature(RoomVersions.V1, ev, "domain", _spec_keys())

    def test_failure_cases(self) -> None:
        """Missing server, unknown keys, other algorithms and malformed signatures all fail."""
        ev = self._signed()
        with self.assertRaises(SignatureVerifyError):
            verify_event_signature(RoomVersions.V1, ev, "other.org", _spec_keys())
        with self.assertRaises(SignatureVerifyError):
            verify_event_signature(RoomVersions.V1, ev, "domain", {"ed25519:2": get_verify_key(generate_signing_key("2"))})
        wrong_key = {"ed25519:1": get_verify_key(generate_signing_key("1"))}
        with self.assertRaises(SignatureVerifyError):
            verify_event_signature(RoomVersions.V1, ev, "domain", wrong_key)
        for sig in ("not base64!!", 12, "AAAA"):
            bad = dict(ev, signatures={"domain": {"ed25519:1": sig}})
            with self.assertRaises(SignatureVerifyError):
                verify_event_signature(RoomVersions.V1, bad, "domain", _spec_keys())
        other_alg = dict(ev, signatures={"domain": {"curve25519:1": "AAAA"}})
        with self.assertRaises(SignatureVerifyError):
            verify_event_signature(RoomVersions.V1, other_alg, "domain", _spec_keys())

    def test_unknown_extra_keys_skipped(self) -> None:
        """Signatures by keys the caller does not know are skipped, not failed."""
        ev = self._signed()
        ev["signatures"]["domain"]["ed25519:unknown"] = "garbage"
        verify_event_signature(RoomVersions.V1, ev, "domain", _spec_keys())


def _event(rv: RoomVersion, **fields: Any) -> Event:
    pdu: dict[str, Any] = {"type": "m.room.message", "sender": "@a:a.org", "room_id": "!r:a.org", "content": {}}
    if rv.event_format == 1:
        pdu["event_id"] = "$e:a.org"
    pdu.update(fields)
    return Event(pdu, rv)


class ServersRequiredTest(unittest.TestCase):
    def test_sender_server(self) -> None:
        """From v3 only the sender's server must sign an ordinary event."""
        self.assertEqual(servers_required_to_sign(RoomVersions.V4, _event(RoomVersions.V4)), {"a.org"})

    def test_v1_event_id_domain(self) -> None:
        """v1/v2 also require the server named in the event id."""
        ev = _event(RoomVersions.V2, event_id="$e:b.org")
        self.assertEqual(servers_required_to_sign(RoomVersions.V2, ev), {"a.org", "b.org"})

    def test_restricted_join_authoriser(self) -> None:
        """From v8 a join naming join_authorised_via_users_server needs that server too."""
        content = {"membership": "join", "join_authorised_via_users_server": "@mod:c.org"}
        cases = [(RoomVersions.V7, {"a.org"}), (RoomVersions.V8, {"a.org", "c.org"}), (RoomVersions.V12, {"a.org", "c.org"})]
        for rv, expected in cases:
            ev = _event(rv, type="m.room.member", state_key="@a:a.org", content=content)
            self.assertEqual(servers_required_to_sign(rv, ev), expected, rv.identifier)

    def test_third_party_invite(self) -> None:
        """A third-party invite does not require the sender's server."""
        content = {"membership": "invite", "third_party_invite": {"signed": {"mxid": "@b:b.org", "token": "t"}}}
        ev = _event(RoomVersions.V10, type="m.room.member", state_key="@b:b.org", content=content)
        self.assertEqual(servers_required_to_sign(RoomVersions.V10, ev), set())


class CheckHashesAndSignaturesTest(unittest.TestCase):
    def _signed(self, rv: RoomVersion, **changes: Any) -> dict[str, Any]:
        ev = {
            "type": "m.room.message",
            "sender": "@u:domain",
            "room_id": "!r:domain",
            "content": {"body": "secret"},
            "depth": 2,
            "origin_server_ts": 5,
            "prev_events": [],
            "auth_events": [],
        }
        ev.update(changes)
        return sign_event_dict(rv, add_content_hash(ev), "domain", vectors.spec_signing_key())

    def test_good_event_passes_unchanged(self) -> None:
        """A correctly hashed and signed event comes back as it is."""
        ev = self._signed(RoomVersions.V10)
        self.assertEqual(check_event_hashes_and_signatures(RoomVersions.V10, ev, {"domain": _spec_keys()}), ev)

    def test_bad_hash_gives_redacted_event(self) -> None:
        """A content-hash mismatch with a good signature yields the redacted form."""
        ev = self._signed(RoomVersions.V10)
        ev["content"] = {"body": "tampered"}
        out = check_event_hashes_and_signatures(RoomVersions.V10, ev, {"domain": _spec_keys()})
        self.assertEqual(out, prune_event_dict(RoomVersions.V10, ev))
        self.assertEqual(out["content"], {})

    def test_bad_signature_rejected(self) -> None:
        """A bad or missing required signature raises SignatureVerifyError."""
        ev = self._signed(RoomVersions.V10)
        ev["depth"] = 3
        with self.assertRaises(SignatureVerifyError):
            check_event_hashes_and_signatures(RoomVersions.V10, ev, {"domain": _spec_keys()})
        with self.assertRaises(SignatureVerifyError):
            check_event_hashes_and_signatures(RoomVersions.V10, self._signed(RoomVersions.V10), {})

    def test_v1_event_id_server_must_sign(self) -> None:
        """In v1 an event whose id names another server needs that server's signature too."""
        ev = self._signed(RoomVersions.V1, event_id="$x:elsewhere")
        with self.assertRaises(SignatureVerifyError):
            check_event_hashes_and_signatures(RoomVersions.V1, ev, {"domain": _spec_keys()})
        other = generate_signing_key("o")
        ev = sign_event_dict(RoomVersions.V1, ev, "elsewhere", other)
        keys = {"domain": _spec_keys(), "elsewhere": {"ed25519:o": get_verify_key(other)}}
        self.assertEqual(check_event_hashes_and_signatures(RoomVersions.V1, ev, keys), ev)

    def test_third_party_invite_needs_some_known_signature(self) -> None:
        """A third-party invite passes with a valid signature by any known server, fails with none."""
        content = {"membership": "invite", "third_party_invite": {"signed": {"mxid": "@b:domain", "token": "t"}}}
        ev = self._signed(RoomVersions.V10, type="m.room.member", state_key="@b:domain", sender="@a:remote", content=content)
        self.assertEqual(check_event_hashes_and_signatures(RoomVersions.V10, ev, {"domain": _spec_keys()}), ev)
        with self.assertRaises(SignatureVerifyError):
            check_event_hashes_and_signatures(RoomVersions.V10, ev, {"remote": _spec_keys()})
