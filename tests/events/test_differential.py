"""Randomised differential checks against Synapse, used only as a black-box oracle.

Redaction, reference hashes (event ids) and hash-then-sign must agree byte for
byte with an independent implementation on every room version, or two
servers would disagree on event ids and signatures.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from canonicaljson import encode_canonical_json
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS as ORACLE_ROOM_VERSIONS
from synapse.crypto.event_signing import add_hashes_and_signatures as oracle_hash_and_sign
from synapse.events import make_event_from_dict as oracle_event
from synapse.events.utils import prune_event as oracle_prune
from twisted.trial import unittest

from matrixd.events.event import Event
from matrixd.events.hashing import add_content_hash
from matrixd.events.redaction import prune_event_dict
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from matrixd.events.signing import sign_event_dict
from tests.events import vectors

TYPES = [
    "m.room.create", "m.room.member", "m.room.join_rules", "m.room.power_levels",
    "m.room.history_visibility", "m.room.aliases", "m.room.redaction", "m.room.message", "m.room.topic",
]
CONTENT_KEYS = [
    "creator", "room_version", "additional_creators", "membership", "join_authorised_via_users_server",
    "third_party_invite", "join_rule", "allow", "ban", "events", "events_default", "invite", "kick", "redact",
    "state_default", "users", "users_default", "notifications", "history_visibility", "aliases", "redacts",
    "reason", "body", "displayname", "m.federate",
]
# Not "age_ts"/"outlier": the oracle leaves such server-internal keys out of the content hash,
# which the spec's algorithm (drop only unsigned/signatures/hashes) does not.
EXTRA_TOP_LEVEL = ["origin", "membership", "prev_state", "redacts", "unsigned", "custom", "com.example.extra"]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(6 if depth < 2 else 3)
    if kind == 0:
        return rng.randrange(-100, 100)
    if kind == 1:
        return rng.choice(["", "join", "@u:x", "é☃", "a\nb"])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    if kind == 4:
        return {"signed": _value(rng, depth + 1), "display_name": "d"}
    return {rng.choice(CONTENT_KEYS): _value(rng, depth + 1) for _ in range(rng.randrange(3))}


def _random_pdu(rng: random.Random, rv: RoomVersion) -> dict[str, Any]:
    event_type = rng.choice(TYPES)
    pdu: dict[str, Any] = {
        "type": event_type,
        "sender": "@u:domain",
        "content": {k: _value(rng) for k in rng.sample(CONTENT_KEYS, rng.randrange(8))},
        "depth": rng.randrange(1, 1000),
        "origin_server_ts": rng.randrange(10**12),
        "prev_events": [],
        "auth_events": [],
    }
    if not (rv.room_id_is_create_event_hash and event_type == "m.room.create"):
        pdu["room_id"] = "!r:domain" if not rv.room_id_is_create_event_hash else "!" + "A" * 43
    if event_type == "m.room.create":
        pdu["state_key"] = ""
    elif rng.random() < 0.7:
        pdu["state_key"] = rng.choice(["", "@u:domain"])
    if rv.event_format == 1:
        pdu["event_id"] = f"${rng.randrange(10**6)}:domain"
    for key in rng.sample(EXTRA_TOP_LEVEL, rng.randrange(len(EXTRA_TOP_LEVEL))):
        pdu[key] = {"age_ts": 5} if key == "unsigned" else _value(rng)
    return pdu


def _canon(d: Any) -> bytes:
    return encode_canonical_json(d)


class OracleDifferentialTest(unittest.TestCase):
    def test_redaction_event_ids_and_signatures_agree(self) -> None:
        """Random events of every version prune, hash to ids and sign identically to the oracle."""
        rng = random.Random(20240611)
        key = vectors.spec_signing_key()
        for rv in KNOWN_ROOM_VERSIONS.values():
            oracle_rv = ORACLE_ROOM_VERSIONS[rv.identifier]
            for i in range(80):
                pdu = _random_pdu(rng, rv)
                where = f"v{rv.identifier} #{i}: {pdu}"

                ours_signed = sign_event_dict(rv, add_content_hash(pdu), "domain", key)
                theirs_signed = copy.deepcopy(pdu)
                oracle_hash_and_sign(oracle_rv, theirs_signed, "domain", key)
                self.assertEqual(_canon(ours_signed), _canon(theirs_signed), where)

                oracle = oracle_event(copy.deepcopy(ours_signed), oracle_rv)
                self.assertEqual(Event(ours_signed, rv).event_id, oracle.event_id, where)
                theirs_pruned = oracle_prune(oracle).get_pdu_json()
                theirs_pruned.pop("unsigned", None)
                self.assertEqual(_canon(prune_event_dict(rv, ours_signed)), _canon(theirs_pruned), where)
