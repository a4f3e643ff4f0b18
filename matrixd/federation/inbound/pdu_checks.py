"""Receipt checks 1-3 for a PDU (format, signatures, content hash) and the origin rule.

``check_pdu(keyring, room_version, pdu)`` returns the event to process: the
PDU as given, or redacted if its content hash does not match.  A malformed PDU
or a missing/invalid required signature raises ``PduDropped``: the event must
be dropped, not stored.

``check_pdus(keyring, room_version, pdus)`` applies the same checks to many
PDUs at once (a ``send_join`` answer, a fetched state): each signing server's
keys are looked up once for the batch, and each PDU's redacted form is
encoded once for both its event id and its signature check.  ``PduBatch`` is
the same in steps, for callers that verify each PDU only when they need it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Mapping, Optional, Union

from signedjson.types import VerifyKey
from twisted.internet import defer
from twisted.python.failure import Failure

from matrixd.api.errors import EventFormatError, SignatureVerifyError
from matrixd.crypto.keyring import Keyring
from matrixd.crypto.server_keys import FetchedKey
from matrixd.events.event import EVENT_ID_LIST_FIELDS, REPEATED_STRING_FIELDS, Event
from matrixd.events.hashing import (
    check_content_hash, content_hash_and_size, event_id_from_reference_hash, redacted_signing_bytes,
)
from matrixd.events.redaction import prune_event_dict
from matrixd.events.room_versions import EventFormat, RoomVersion
from matrixd.events.signing import SUPPORTED_ALGORITHM, servers_required_to_sign, verify_event_signature
from matrixd.events.validation import validate_pdu
from matrixd.types import IdentifierError, get_domain_from_id


#: How many servers' keys a batch looks up at once.
KEY_LOOKUPS_AT_ONCE = 16

#: ``unsigned`` keys only the receiving server may set.
_SERVER_ONLY_UNSIGNED = frozenset(("redacted_because", "transaction_id", "membership"))


class PduDropped(Exception):
    """The PDU fails a check that means it must be dropped."""


async def check_pdu(keyring: Keyring, room_version: RoomVersion, pdu: Any,
                    expected_event_id: Optional[str] = None) -> Event:
    """Checks 1-3; ``expected_event_id``: the id the PDU must have (fetched by id)."""
    if not isinstance(pdu, dict):
        raise PduDropped("PDU is not a JSON object")
    pdu = dict(pdu)
    unsigned = pdu.get("unsigned")
    if isinstance(unsigned, dict):
        pdu["unsigned"] = {k: v for k, v in unsigned.items() if k not in _SERVER_ONLY_UNSIGNED}
    try:
        validate_pdu(room_version, pdu)
    except EventFormatError as e:
        raise PduDropped(f"invalid PDU: {e.msg}") from None
    event = Event(pdu, room_version)
    if expected_event_id is not None and event.event_id != expected_event_id:
        raise PduDropped(f"asked for {expected_event_id}, got {event.event_id}")
    try:
        checked = await keyring.verify_event_signatures(room_version, pdu)
    except SignatureVerifyError as e:
        raise PduDropped(f"signature check failed: {e.msg}") from None
    if not check_content_hash(pdu):
        return Event(checked, room_version, event_id=event.event_id)  # redacted: the content was tampered with
    return Event(pdu, room_version, event_id=event.event_id)


async def check_pdus(keyring: Keyring, room_version: RoomVersion,
                     pdus: Sequence[Any]) -> list[Union[Event, PduDropped]]:
    """``check_pdu`` of each of ``pdus``: the event to process, or why it must be dropped (same order).

    The keys of every server that must sign are looked up once for the batch
    (whatever validity they have). A PDU signed only with keys that lookup
    could not find is dropped; one whose key is known but not valid at its
    ``origin_server_ts`` (room v5+), or that names no required signer (a
    third-party invite), goes through ``check_pdu`` alone, which may fetch.
    """
    batch = PduBatch(room_version, pdus)
    await batch.fetch_keys(keyring)
    await batch.check_unbatched(keyring)
    return [batch.result(i) for i in range(len(pdus))]


class PduBatch:
    """``check_pdus`` in steps, so a caller can verify each PDU's signatures only when it needs the event.

    Construction runs the format checks and computes every event id (the
    events are available unverified through ``candidates``); ``fetch_keys``
    looks the signers' keys up once; ``check_unbatched`` runs ``check_pdu`` on
    the PDUs the batch cannot settle; ``result(i)`` then verifies PDU ``i``
    (once, remembered), without waiting. A caller storing thousands of fetched
    events verifies them as it goes, while earlier ones are written.
    """

    def __init__(self, room_version: RoomVersion, pdus: Sequence[Any], *, owned: bool = False) -> None:
        """``owned``: the caller hands the parsed PDUs over (nobody else reads them), so each is
        trimmed in place rather than copied: a large ``/state`` answer is not held twice."""
        self._room_version = room_version
        self._owned = owned
        # Our own list: each prepared PDU replaces the parsed one it copies, so the
        # caller's parsed answer can be freed while the batch lives.
        self._pdus: list[Any] = list(pdus)
        self._results: list[Union[Event, PduDropped, None]] = [None] * len(pdus)
        self._event_ids: list[Optional[str]] = [None] * len(pdus)
        # index -> (pdu, the bytes its signatures cover, its content hash, the event, the servers that must sign it)
        self._prepared: dict[int, tuple[dict[str, Any], bytes, bytes, Event, frozenset[str]]] = {}
        self._strings: dict[str, str] = {}  # see _share_strings
        # One object per distinct set of required signers (a large room's PDUs share a few).
        self._signer_sets: dict[frozenset[str], frozenset[str]] = {}
        self._unbatched: list[int] = []  # left for check_pdu
        self._key_ids_by_server: dict[str, set[str]] = {}
        self._keys: dict[str, dict[str, FetchedKey]] = {}
        for i, raw in enumerate(pdus):
            self._prepare(i, raw)

    def _prepare(self, i: int, raw: Any) -> None:
        room_version = self._room_version
        if not isinstance(raw, dict):
            self._results[i] = PduDropped("PDU is not a JSON object")
            return
        if self._owned:
            pdu = raw
            self._share_strings(pdu)
        else:
            pdu = dict(raw)
        unsigned = pdu.get("unsigned")
        if isinstance(unsigned, dict) and (not self._owned or not _SERVER_ONLY_UNSIGNED.isdisjoint(unsigned)):
            pdu["unsigned"] = {k: v for k, v in unsigned.items() if k not in _SERVER_ONLY_UNSIGNED}
        try:
            content_hash, size = content_hash_and_size(pdu)
        except (ValueError, TypeError) as e:  # NaN/Infinity, lone surrogates, non-JSON values
            self._results[i] = PduDropped(f"invalid PDU: it cannot be encoded as canonical JSON: {e}")
            return
        try:
            validate_pdu(room_version, pdu, size)
        except EventFormatError as e:
            self._results[i] = PduDropped(f"invalid PDU: {e.msg}")
            return
        signing = redacted_signing_bytes(room_version, pdu)
        event_id = (pdu["event_id"] if room_version.event_format == EventFormat.V1
                    else event_id_from_reference_hash(room_version, hashlib.sha256(signing).digest()))
        event = Event(pdu, room_version, event_id=event_id)
        self._pdus[i] = pdu
        self._event_ids[i] = event_id
        signers = frozenset(servers_required_to_sign(room_version, event))
        required = self._signer_sets.setdefault(signers, signers)
        if not required:
            self._unbatched.append(i)
            return
        self._prepared[i] = (pdu, signing, content_hash, event, required)
        sigs = pdu["signatures"]
        for server in required:
            server_sigs = sigs.get(server)
            if isinstance(server_sigs, dict):
                self._key_ids_by_server.setdefault(server, set()).update(
                    k for k in server_sigs if k.startswith(SUPPORTED_ALGORITHM + ":"))

    def _share_strings(self, pdu: dict[str, Any]) -> None:
        """Make the values the batch's PDUs repeat (room, senders, types, the cited auth and prev
        events) one object each: a 2,000-member room's state holds about a quarter less."""
        memo = self._strings
        for key in REPEATED_STRING_FIELDS:
            value = pdu.get(key)
            if type(value) is str:
                pdu[key] = memo.setdefault(value, value)
        for key in EVENT_ID_LIST_FIELDS:
            refs = pdu.get(key)
            if type(refs) is list:
                for j, ref in enumerate(refs):
                    if type(ref) is str:
                        refs[j] = memo.setdefault(ref, ref)
        content = pdu.get("content")
        if type(content) is dict:
            membership = content.get("membership")
            if type(membership) is str:
                content["membership"] = memo.setdefault(membership, membership)

    def __len__(self) -> int:
        return len(self._pdus)

    def event_ids(self) -> list[Optional[str]]:
        """Each PDU's event id (None: malformed, dropped before its id could be known)."""
        return list(self._event_ids)

    def candidates(self) -> list[tuple[int, Event]]:
        """Each PDU not dropped yet, with its index: its event if settled, else the event not yet verified."""
        out: list[tuple[int, Event]] = []
        for i, result in enumerate(self._results):
            if isinstance(result, Event):
                out.append((i, result))
            elif result is None and i in self._prepared:
                out.append((i, self._prepared[i][3]))
        return out

    async def fetch_keys(self, keyring: Keyring) -> None:
        """Look up the signers' keys, ``KEY_LOOKUPS_AT_ONCE`` servers at a time (a large room has many)."""
        limit = defer.DeferredSemaphore(KEY_LOOKUPS_AT_ONCE)

        async def lookup(server: str, key_ids: set[str]) -> None:
            self._keys[server] = await keyring.get_verify_keys(server, key_ids, 0) if key_ids else {}

        results = await defer.DeferredList(
            [limit.run(lookup, server, key_ids) for server, key_ids in self._key_ids_by_server.items()],
            consumeErrors=True,
        )
        for _ok, result in results:
            if isinstance(result, Failure):
                result.raiseException()

    async def check_unbatched(self, keyring: Keyring) -> None:
        """``check_pdu`` on each PDU the batch cannot settle with its keys (after ``fetch_keys``)."""
        unbatched = set(self._unbatched)
        for i in range(len(self._pdus)):
            if self._results[i] is None and (i in unbatched or self._needs_check_pdu(i)):
                try:
                    self._results[i] = await check_pdu(keyring, self._room_version, self._pdus[i])
                except PduDropped as e:
                    self._results[i] = e

    def result(self, i: int) -> Union[Event, PduDropped]:
        """PDU ``i``'s event to process (redacted if its content hash fails) or why it is dropped."""
        result = self._results[i]
        if result is None:
            result = self._verify(i)
        if result is None:
            raise RuntimeError(f"PDU {i} needs check_pdu: check_unbatched was not awaited")
        return result

    def _needs_check_pdu(self, i: int) -> bool:
        """Every signer's key is known, but some signer's not as valid at the PDU's time."""
        known_at_all, usable = self._usable_keys(i)
        return known_at_all and not all(usable.values())

    def _usable_keys(self, i: int) -> tuple[bool, dict[str, dict[str, VerifyKey]]]:
        """Whether a key of every signer was found, and the keys valid at PDU ``i``'s time by signer."""
        pdu, _signing, _content_hash, _event, required = self._prepared[i]
        min_valid = 0
        if self._room_version.enforce_key_validity:
            ts = pdu.get("origin_server_ts")
            min_valid = ts if isinstance(ts, int) and not isinstance(ts, bool) else 0
        usable: dict[str, dict[str, VerifyKey]] = {}
        known_at_all = True
        for server in required:
            server_sigs = pdu["signatures"].get(server)
            found = self._keys.get(server, {})
            signed_with = [kid for kid in (server_sigs if isinstance(server_sigs, dict) else ()) if kid in found]
            known_at_all = known_at_all and bool(signed_with)
            usable[server] = {
                kid: found[kid].verify_key for kid in signed_with if found[kid].valid_until_ts >= min_valid
            }
        return known_at_all, usable

    def _verify(self, i: int) -> Union[Event, PduDropped, None]:
        """Signatures and content hash of prepared PDU ``i`` (None: left for check_pdu)."""
        room_version = self._room_version
        pdu, signing, content_hash, event, required = self._prepared[i]
        known_at_all, usable = self._usable_keys(i)
        result: Union[Event, PduDropped, None]
        if not known_at_all:
            # No key of a signer could be found at all (the lookup fetched): as check_pdu would, drop it,
            # without asking the server again for every PDU of the batch.
            try:
                for server in sorted(required):
                    verify_event_signature(room_version, pdu, server, usable[server], signing)
            except SignatureVerifyError as e:
                self._results[i] = result = PduDropped(f"signature check failed: {e.msg}")
                return result
        if not all(usable.values()):
            return None  # keys known but not valid at the PDU's time: check_pdu looks again (or refuses)
        try:
            for server in sorted(required):
                verify_event_signature(room_version, pdu, server, usable[server], signing)
        except SignatureVerifyError as e:
            result = PduDropped(f"signature check failed: {e.msg}")
        else:
            if check_content_hash(pdu, content_hash):
                result = event
            else:  # redacted: the content was tampered with
                result = Event(prune_event_dict(room_version, pdu), room_version, event_id=event.event_id)
        self._results[i] = result
        del self._prepared[i]  # settled: its signing bytes are no longer needed
        return result


def domain_of(identifier: str) -> Optional[str]:
    try:
        return get_domain_from_id(identifier)
    except IdentifierError:
        return None


def check_origin(origin: str, room_version: RoomVersion, pdu: Mapping[str, Any]) -> None:
    """A transaction's PDUs are the origin's own: its users' events (or, in v1/v2, ids it minted).

    Raises PduDropped otherwise.
    """
    sender = pdu.get("sender")
    if isinstance(sender, str) and domain_of(sender) == origin:
        return
    if room_version.event_format == EventFormat.V1:
        event_id = pdu.get("event_id")
        if isinstance(event_id, str) and domain_of(event_id) == origin:
            return
    raise PduDropped(f"{origin} may not send an event from {sender!r}")
