"""The redaction algorithm ("pruning") of every room version.

Redaction keeps only the keys the protocol needs: what the authorisation
rules read, plus what binds the event into the DAG and to its signatures.
The same algorithm produces the form that is signed and the form whose hash
is the event id, so it must match the spec byte for byte in every version
(``content/rooms/fragments/v*-redactions.md``).
"""

from __future__ import annotations

from typing import Any, Mapping

from matrixd.events.event import Event, InternalMetadata, JsonDict
from matrixd.events.room_versions import RedactionRules, RoomVersion

# Top-level keys kept by redaction.
_KEPT_TOP_LEVEL_V1 = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "prev_state",
        "auth_events",
        "origin",
        "origin_server_ts",
        "membership",
    }
)
# v11 stops protecting `origin`, `membership` and `prev_state`.
_KEPT_TOP_LEVEL_V11 = _KEPT_TOP_LEVEL_V1 - {"origin", "membership", "prev_state"}

_POWER_LEVELS_V1 = (
    "ban",
    "events",
    "events_default",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
)

# Content keys kept per event type, per redaction-rules variant. m.room.create
# in v11 keeps everything and the v11 member `third_party_invite.signed` rule
# is structural; both are handled in _prune_content.
_KEPT_CONTENT: dict[RedactionRules, dict[str, tuple[str, ...]]] = {
    RedactionRules.V1: {
        "m.room.member": ("membership",),
        "m.room.create": ("creator",),
        "m.room.join_rules": ("join_rule",),
        "m.room.power_levels": _POWER_LEVELS_V1,
        "m.room.aliases": ("aliases",),
        "m.room.history_visibility": ("history_visibility",),
    },
    RedactionRules.V6: {
        "m.room.member": ("membership",),
        "m.room.create": ("creator",),
        "m.room.join_rules": ("join_rule",),
        "m.room.power_levels": _POWER_LEVELS_V1,
        "m.room.history_visibility": ("history_visibility",),
    },
    RedactionRules.V8: {
        "m.room.member": ("membership",),
        "m.room.create": ("creator",),
        "m.room.join_rules": ("join_rule", "allow"),
        "m.room.power_levels": _POWER_LEVELS_V1,
        "m.room.history_visibility": ("history_visibility",),
    },
    RedactionRules.V9: {
        "m.room.member": ("membership", "join_authorised_via_users_server"),
        "m.room.create": ("creator",),
        "m.room.join_rules": ("join_rule", "allow"),
        "m.room.power_levels": _POWER_LEVELS_V1,
        "m.room.history_visibility": ("history_visibility",),
    },
    RedactionRules.V11: {
        "m.room.member": ("membership", "join_authorised_via_users_server"),
        "m.room.join_rules": ("join_rule", "allow"),
        "m.room.power_levels": tuple(sorted(_POWER_LEVELS_V1 + ("invite",))),
        "m.room.history_visibility": ("history_visibility",),
        "m.room.redaction": ("redacts",),
    },
}


def prune_event_dict(room_version: RoomVersion, pdu: Mapping[str, Any]) -> JsonDict:
    """Return the redacted form of ``pdu`` under ``room_version``'s rules.

    The result is a new top-level dict with a new ``content`` dict; nested
    values it keeps (``hashes``, ``signatures``, ``prev_events``,
    ``content.users``...) are shared with the input and must not be mutated.
    Redacting an already redacted event returns an equal dict.
    """
    rules = room_version.redaction_rules
    kept = _KEPT_TOP_LEVEL_V11 if rules >= RedactionRules.V11 else _KEPT_TOP_LEVEL_V1
    out: JsonDict = {k: v for k, v in pdu.items() if k in kept}
    content = pdu.get("content")
    out["content"] = _prune_content(rules, pdu.get("type"), content if isinstance(content, dict) else {})
    return out


def _prune_content(rules: RedactionRules, event_type: Any, content: Mapping[str, Any]) -> JsonDict:
    if rules >= RedactionRules.V11 and event_type == "m.room.create":
        return dict(content)
    keys = _KEPT_CONTENT[rules].get(event_type) if isinstance(event_type, str) else None
    if not keys:
        return {}
    out = {k: content[k] for k in keys if k in content}
    if rules >= RedactionRules.V11 and event_type == "m.room.member":
        # "third_party_invite is no longer redacted, but will only contain the
        # signed key": the object survives (possibly empty), stripped to `signed`.
        tpi = content.get("third_party_invite")
        if isinstance(tpi, dict):
            out["third_party_invite"] = {"signed": tpi["signed"]} if "signed" in tpi else {}
    return out


def prune_event(event: Event) -> Event:
    """The redacted copy of ``event``: same id, same room version, copied metadata."""
    pruned = prune_event_dict(event.room_version, event.get_pdu_json())
    metadata = InternalMetadata.from_dict(event.internal_metadata.to_dict())
    return Event(pruned, event.room_version, event_id=event.event_id, internal_metadata=metadata)
