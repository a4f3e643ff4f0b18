"""The registry of room versions 1-12 and the properties that vary between them.

Every rule that differs by room version reads one of these flags instead of
comparing version strings, so a new version is one entry here.
"""

from __future__ import annotations

import enum

import attrs

from matrixd.api.errors import UnsupportedRoomVersionError


class EventFormat(enum.IntEnum):
    """How event ids are formed and how prev/auth events are listed."""

    V1 = 1  # "$random:server" ids carried in the event; [[id, {hashes}]] pairs (rooms v1, v2)
    V2 = 2  # ids are the standard-base64 reference hash (room v3)
    V3 = 3  # ids are the url-safe-base64 reference hash (rooms v4+)


class StateResAlgorithm(enum.IntEnum):
    V1 = 1
    V2 = 2
    V2_1 = 3  # room v12: starts from the unconflicted state and uses the conflicted subgraph


class RedactionRules(enum.IntEnum):
    V1 = 1  # rooms v1-v5: aliases content kept
    V6 = 6  # rooms v6-v7: m.room.aliases no longer special
    V8 = 8  # rooms v8: join_rules keeps `allow`
    V9 = 9  # rooms v9-v10: member keeps `join_authorised_via_users_server`
    V11 = 11  # rooms v11+: create keeps all content, redacts in content, power levels keep `invite`


@attrs.frozen(slots=True)
class RoomVersion:
    """The properties of one room version (see ``content/rooms/vN.md``)."""

    identifier: str
    stable: bool
    event_format: EventFormat
    state_res: StateResAlgorithm
    redaction_rules: RedactionRules
    # v5+: a remote server's key must be valid at the event's origin_server_ts.
    enforce_key_validity: bool
    # v1-v5: m.room.aliases has its own auth rule (state_key must be sender's domain).
    special_case_aliases_auth: bool
    # v1-v2: m.room.redaction has its own auth rule (rule 11: redact level, or the
    # redacted event id's domain is the sender's); from v3 redactions are authorised
    # like any other event and the redaction is applied (or not) afterwards.
    special_case_redaction_auth: bool
    # v6+: integers outside [-(2**53)+1, 2**53-1] and floats are rejected.
    strict_canonicaljson: bool
    # v6+: power level checks include the `notifications` key.
    limit_notifications_power_levels: bool
    # v7+: the knock membership and join rule.
    knock_join_rule: bool
    # v8+: the restricted join rule and join_authorised_via_users_server.
    restricted_join_rule: bool
    # v10+: the knock_restricted join rule.
    knock_restricted_join_rule: bool
    # v10+: power level values must be integers, not numeric strings.
    enforce_int_power_levels: bool
    # v11+: the create event's sender is the creator; `creator` is not read.
    implicit_room_creator: bool
    # v11+: redaction events carry `redacts` in content.
    redacts_in_content: bool
    # v12+: room id is "!" + the create event's reference hash; the create event has no
    # room_id and is never listed in auth_events; creators (sender plus
    # additional_creators) have infinite power.
    room_id_is_create_event_hash: bool
    privileged_creators: bool


_V1 = RoomVersion(
    identifier="1",
    stable=True,
    event_format=EventFormat.V1,
    state_res=StateResAlgorithm.V1,
    redaction_rules=RedactionRules.V1,
    enforce_key_validity=False,
    special_case_aliases_auth=True,
    special_case_redaction_auth=True,
    strict_canonicaljson=False,
    limit_notifications_power_levels=False,
    knock_join_rule=False,
    restricted_join_rule=False,
    knock_restricted_join_rule=False,
    enforce_int_power_levels=False,
    implicit_room_creator=False,
    redacts_in_content=False,
    room_id_is_create_event_hash=False,
    privileged_creators=False,
)
_V2 = attrs.evolve(_V1, identifier="2", state_res=StateResAlgorithm.V2)
_V3 = attrs.evolve(_V2, identifier="3", event_format=EventFormat.V2, special_case_redaction_auth=False)
_V4 = attrs.evolve(_V3, identifier="4", event_format=EventFormat.V3)
_V5 = attrs.evolve(_V4, identifier="5", enforce_key_validity=True)
_V6 = attrs.evolve(
    _V5,
    identifier="6",
    redaction_rules=RedactionRules.V6,
    special_case_aliases_auth=False,
    strict_canonicaljson=True,
    limit_notifications_power_levels=True,
)
_V7 = attrs.evolve(_V6, identifier="7", knock_join_rule=True)
_V8 = attrs.evolve(_V7, identifier="8", restricted_join_rule=True, redaction_rules=RedactionRules.V8)
_V9 = attrs.evolve(_V8, identifier="9", redaction_rules=RedactionRules.V9)
_V10 = attrs.evolve(_V9, identifier="10", knock_restricted_join_rule=True, enforce_int_power_levels=True)
_V11 = attrs.evolve(
    _V10,
    identifier="11",
    redaction_rules=RedactionRules.V11,
    implicit_room_creator=True,
    redacts_in_content=True,
)
_V12 = attrs.evolve(
    _V11,
    identifier="12",
    state_res=StateResAlgorithm.V2_1,
    room_id_is_create_event_hash=True,
    privileged_creators=True,
)


class RoomVersions:
    V1 = _V1
    V2 = _V2
    V3 = _V3
    V4 = _V4
    V5 = _V5
    V6 = _V6
    V7 = _V7
    V8 = _V8
    V9 = _V9
    V10 = _V10
    V11 = _V11
    V12 = _V12


KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {
    v.identifier: v for v in (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12)
}

DEFAULT_ROOM_VERSION = _V12


def get_room_version(identifier: object) -> RoomVersion:
    """Look up a room version, refusing unknown ones with M_UNSUPPORTED_ROOM_VERSION."""
    if not isinstance(identifier, str) or identifier not in KNOWN_ROOM_VERSIONS:
        raise UnsupportedRoomVersionError(f"Unsupported room version: {identifier!r}")
    return KNOWN_ROOM_VERSIONS[identifier]
