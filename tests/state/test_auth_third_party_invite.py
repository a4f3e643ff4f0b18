"""Third-party invites: the member invite rule with real ed25519 signatures, and the event type's rule."""

from __future__ import annotations

import base64
import copy
from typing import Any, Optional

from signedjson.key import decode_signing_key_base64, encode_verify_key_base64, get_verify_key
from signedjson.sign import sign_json
from signedjson.types import SigningKey
from twisted.trial import unittest

from matrixd.events.event import Event
from matrixd.events.room_versions import RoomVersion
from matrixd.state.auth.third_party_invite import public_keys_of, signed_matches_public_keys
from tests.state.auth_factory import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    AuthAssertions,
    RoomBuilder,
    expand,
    for_room_versions,
    joined_room,
)

TOKEN = "tok3n"
ID_SERVER = "id.example"


def _key(seed: int) -> SigningKey:
    return decode_signing_key_base64("ed25519", "0", base64.b64encode(bytes([seed]) * 32).decode().rstrip("="))


KEY = _key(1)
OTHER_KEY = _key(2)


def _public(key: SigningKey) -> str:
    return encode_verify_key_base64(get_verify_key(key))


def _urlsafe_key() -> tuple[SigningKey, str]:
    """A key whose standard base64 has '+' or '/', with its URL-safe encoding."""
    for seed in range(3, 256):
        key = _key(seed)
        public = _public(key)
        if "+" in public or "/" in public:
            return key, public.replace("+", "-").replace("/", "_")
    raise AssertionError("no key with + or / in its base64")


def _signed(mxid: str = BOB, token: str = TOKEN, key: SigningKey = KEY, **extra: Any) -> dict[str, Any]:
    return sign_json({"mxid": mxid, "token": token, **extra}, ID_SERVER, key)


@expand
class ThirdPartyMemberInviteTests(unittest.TestCase, AuthAssertions):
    def _room(self, rv: RoomVersion, content: Optional[dict[str, Any]] = None, sender: str = ALICE) -> RoomBuilder:
        room = joined_room(rv, join_rule="invite", members=[CAROL], users={CAROL: 50})
        body = {"display_name": "b...", "key_validity_url": "https://id.example/isvalid", "public_key": _public(KEY)}
        if content is not None:
            body = content
        room.send("m.room.third_party_invite", sender, body, state_key=TOKEN)
        return room

    def _invite(self, room: RoomBuilder, tpi: Any, sender: str = ALICE, target: str = BOB) -> Event:
        return room.member_event(sender, target, "invite", {"third_party_invite": tpi})

    @for_room_versions(ALL_VERSIONS)
    def test_valid_signature_allowed(self, rv: RoomVersion) -> None:
        """A signed block verifying with the invite event's public_key allows the invite."""
        room = self._room(rv)
        self.assertAllowed(room, self._invite(room, {"display_name": "b", "signed": _signed()}))

    @for_room_versions(ALL_VERSIONS)
    def test_key_from_public_keys_list(self, rv: RoomVersion) -> None:
        """A signature verifying with an entry of public_keys is enough."""
        content = {
            "display_name": "b",
            "key_validity_url": "https://id.example/isvalid",
            "public_key": _public(OTHER_KEY),
            "public_keys": [{"public_key": "not base64!"}, {"public_key": _public(KEY)}],
        }
        room = self._room(rv, content)
        self.assertAllowed(room, self._invite(room, {"display_name": "b", "signed": _signed()}))

    @for_room_versions(ALL_VERSIONS)
    def test_urlsafe_public_key(self, rv: RoomVersion) -> None:
        """Public keys in the URL-safe base64 alphabet verify too."""
        key, public = _urlsafe_key()
        room = self._room(rv, {"display_name": "b", "public_key": public})
        self.assertAllowed(room, self._invite(room, {"display_name": "b", "signed": _signed(key=key)}))

    @for_room_versions(ALL_VERSIONS)
    def test_wrong_key_rejected(self, rv: RoomVersion) -> None:
        """A signature from a key the invite event does not list is rejected."""
        room = self._room(rv)
        tpi = {"display_name": "b", "signed": _signed(key=OTHER_KEY)}
        self.assertRejected(room, self._invite(room, tpi), "not signed by any key")

    @for_room_versions(ALL_VERSIONS)
    def test_tampered_signed_rejected(self, rv: RoomVersion) -> None:
        """A signed block altered after signing does not verify."""
        room = self._room(rv)
        signed = _signed()
        signed["extra"] = "added later"
        self.assertRejected(room, self._invite(room, {"signed": signed}), "not signed by any key")

    @for_room_versions(ALL_VERSIONS)
    def test_unsigned_or_garbled_signatures_rejected(self, rv: RoomVersion) -> None:
        """No signatures, non-ed25519 key ids, undecodable signatures: all rejected without crashing."""
        room = self._room(rv)
        good = _signed()
        sig = good["signatures"][ID_SERVER]["ed25519:0"]
        for signatures in (
            None,
            {},
            {ID_SERVER: "x"},
            {ID_SERVER: {"curve25519:0": sig}},
            {ID_SERVER: {"ed25519:0": "!!!"}},
            {ID_SERVER: {"ed25519:0": 5}},
        ):
            signed = {"mxid": BOB, "token": TOKEN, "signatures": signatures}
            self.assertRejected(room, self._invite(room, {"signed": signed}), "not signed by any key")

    @for_room_versions(ALL_VERSIONS)
    def test_malformed_public_keys_rejected(self, rv: RoomVersion) -> None:
        """Unusable public keys (bad base64, wrong length, absent) match nothing."""
        for content in (
            {"public_key": "***"},
            {"public_key": "AAAA"},
            {"public_keys": "x"},
            {"public_keys": [5, {"public_key": 7}]},
            {},
        ):
            room = self._room(rv, content)
            self.assertRejected(room, self._invite(room, {"signed": _signed()}), "not signed by any key")

    @for_room_versions(ALL_VERSIONS)
    def test_target_banned_rejected(self, rv: RoomVersion) -> None:
        """A banned target cannot be invited by third-party invite."""
        room = self._room(rv)
        room.member(ALICE, BOB, "ban")
        self.assertRejected(room, self._invite(room, {"signed": _signed()}), "banned")

    @for_room_versions(ALL_VERSIONS)
    def test_missing_signed_rejected(self, rv: RoomVersion) -> None:
        """third_party_invite without a signed object is rejected."""
        room = self._room(rv)
        for tpi in ({}, {"signed": "x"}, "x", None):
            self.assertRejected(room, self._invite(room, tpi), "no signed object")

    @for_room_versions(ALL_VERSIONS)
    def test_missing_mxid_or_token_rejected(self, rv: RoomVersion) -> None:
        """signed needs string mxid and token."""
        room = self._room(rv)
        for signed in ({"token": TOKEN}, {"mxid": BOB}, {"mxid": BOB, "token": 5}):
            self.assertRejected(room, self._invite(room, {"signed": signed}), "needs mxid and token")

    @for_room_versions(ALL_VERSIONS)
    def test_mxid_must_match_state_key(self, rv: RoomVersion) -> None:
        """The signed mxid must be the invited user."""
        room = self._room(rv)
        event = self._invite(room, {"signed": _signed(mxid=CAROL)})
        self.assertRejected(room, event, "does not match state_key")

    @for_room_versions(ALL_VERSIONS)
    def test_unknown_token_rejected(self, rv: RoomVersion) -> None:
        """A token with no m.room.third_party_invite in the state is rejected."""
        room = self._room(rv)
        event = self._invite(room, {"signed": _signed(token="other")})
        self.assertRejected(room, event, "no m.room.third_party_invite with token")

    @for_room_versions(ALL_VERSIONS)
    def test_sender_must_match_third_party_invite_sender(self, rv: RoomVersion) -> None:
        """Only the sender of the m.room.third_party_invite may complete it."""
        room = self._room(rv)
        event = self._invite(room, {"signed": _signed()}, sender=CAROL)
        self.assertRejected(room, event, "does not match the sender")

    @for_room_versions(ALL_VERSIONS)
    def test_sender_membership_not_checked(self, rv: RoomVersion) -> None:
        """The third-party path does not require the inviter to still be joined (the spec's rule)."""
        room = self._room(rv, sender=CAROL)
        room.member(CAROL, CAROL, "leave")
        self.assertAllowed(room, self._invite(room, {"signed": _signed()}, sender=CAROL))

    @for_room_versions(ALL_VERSIONS)
    def test_target_joined_not_checked(self, rv: RoomVersion) -> None:
        """The third-party path only refuses banned targets, not joined ones (the spec's rule)."""
        room = self._room(rv)
        room.member(ALICE, BOB, "invite")
        room.join(BOB)
        self.assertAllowed(room, self._invite(room, {"signed": _signed()}))


@expand
class ThirdPartyInviteEventTests(unittest.TestCase, AuthAssertions):
    def _event(self, room: RoomBuilder, sender: str) -> Event:
        return room.make("m.room.third_party_invite", sender, {"display_name": "x", "public_key": "k"}, state_key="t")

    @for_room_versions(ALL_VERSIONS)
    def test_invite_level_suffices(self, rv: RoomVersion) -> None:
        """m.room.third_party_invite needs only the invite level, not state_default."""
        room = joined_room(rv, members=[CAROL], state_default=50, invite=0)
        self.assertAllowed(room, self._event(room, CAROL))

    @for_room_versions(ALL_VERSIONS)
    def test_below_invite_level_rejected(self, rv: RoomVersion) -> None:
        """Below the invite level, it is rejected even if events[] would allow it."""
        room = joined_room(
            rv, members=[CAROL], invite=10, events={"m.room.third_party_invite": 0}, users={CAROL: 5}
        )
        self.assertRejected(room, self._event(room, CAROL), "invite level 10")

    @for_room_versions(ALL_VERSIONS)
    def test_sender_must_be_joined(self, rv: RoomVersion) -> None:
        """A non-member cannot send m.room.third_party_invite."""
        room = joined_room(rv)
        self.assertRejected(room, self._event(room, CAROL), "not joined")


class SignatureHelperTests(unittest.TestCase):
    def test_public_keys_of_dedupes_and_filters(self) -> None:
        """public_keys_of collects public_key and public_keys entries, once each, strings only."""
        content = {"public_key": "A", "public_keys": [{"public_key": "A"}, {"public_key": "B"}, {"x": 1}, "C"]}
        self.assertEqual(public_keys_of(content), ["A", "B"])

    def test_any_signer_name_counts(self) -> None:
        """The signing entity's name does not matter; a matching key does."""
        signed = sign_json({"mxid": BOB, "token": TOKEN}, "whatever.example", KEY)
        self.assertTrue(signed_matches_public_keys(signed, [_public(KEY)]))

    def test_does_not_mutate_signed(self) -> None:
        """Verification leaves the event's signed object untouched."""
        signed = _signed(key=OTHER_KEY)
        before = copy.deepcopy(signed)
        self.assertFalse(signed_matches_public_keys(signed, [_public(KEY)]))
        self.assertTrue(signed_matches_public_keys(signed, [_public(KEY), _public(OTHER_KEY)]))
        self.assertEqual(signed, before)

    def test_padded_public_key(self) -> None:
        """A padded base64 key is still read."""
        public = _public(KEY)
        padded = public + "=" * (-len(public) % 4)
        self.assertTrue(signed_matches_public_keys(_signed(), [padded]))

    def test_unsigned_is_ignored(self) -> None:
        """'unsigned' is not covered by the signature, as in any signed JSON."""
        signed = _signed()
        signed["unsigned"] = {"age": 5}
        self.assertTrue(signed_matches_public_keys(signed, [_public(KEY)]))
