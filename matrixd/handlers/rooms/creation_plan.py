"""What a ``/createRoom`` request turns into: the ordered list of initial events.

Pure and storage-free, so the ordering rules of the spec (create, creator join,
power levels, canonical alias, preset, initial_state, name/topic, invites) are
pinned by unit tests.  The handler then builds, auth-checks and persists each
entry in order, so every event goes through the real auth rules.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import attrs

from matrixd.api.errors import BadJsonError, Codes, MatrixError
from matrixd.events.room_versions import RoomVersion
from matrixd.types import JsonDict, UserID

PRESETS: dict[str, tuple[str, str, str]] = {
    # preset: (join_rule, history_visibility, guest_access)
    "private_chat": ("invite", "shared", "can_join"),
    "trusted_private_chat": ("invite", "shared", "can_join"),
    "public_chat": ("public", "shared", "forbidden"),
}


@attrs.frozen(slots=True)
class PlannedEvent:
    event_type: str
    state_key: Optional[str]
    content: JsonDict


@attrs.frozen(slots=True)
class RoomCreationPlan:
    create_content: JsonDict
    # Events after the create event, in the order the spec requires.
    events: tuple[PlannedEvent, ...]
    invitees: tuple[str, ...]
    preset: str
    visibility: str


def default_power_levels(room_version: RoomVersion, creator: str, preset: str,
                         invitees: Sequence[str]) -> JsonDict:
    """The initial ``m.room.power_levels`` content before ``power_level_content_override``."""
    users: dict[str, int] = {}
    if not room_version.privileged_creators:
        users[creator] = 100
        if preset == "trusted_private_chat":
            for invitee in invitees:
                users[invitee] = 100
    tombstone = 150 if room_version.privileged_creators else 100
    return {
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": tombstone,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50 if preset == "public_chat" else 0,
        "historical": 100,
        "notifications": {"room": 50},
    }


def plan_room_creation(
    room_version: RoomVersion,
    creator: str,
    body: Mapping[str, Any],
    server_name: str,
) -> RoomCreationPlan:
    """Validate a ``/createRoom`` body and lay out the room's initial events.

    Raises 400 M_BAD_JSON / M_INVALID_PARAM naming the offending field.
    """
    visibility = body.get("visibility", "private")
    if visibility not in ("public", "private"):
        raise MatrixError(400, "visibility must be 'public' or 'private'", Codes.INVALID_PARAM)
    preset = body.get("preset")
    if preset is None:
        preset = "public_chat" if visibility == "public" else "private_chat"
    if preset not in PRESETS:
        raise MatrixError(400, f"Unknown preset {preset!r}", Codes.INVALID_PARAM)

    invitees = _parse_invitees(body.get("invite", []), creator)
    is_direct = body.get("is_direct", False)
    if not isinstance(is_direct, bool):
        raise BadJsonError("is_direct must be a boolean")

    creation_content = body.get("creation_content", {})
    if not isinstance(creation_content, dict):
        raise BadJsonError("creation_content must be an object")
    create_content: JsonDict = dict(creation_content)
    create_content.pop("creator", None)
    create_content["room_version"] = room_version.identifier
    if not room_version.implicit_room_creator:
        create_content["creator"] = creator
    if room_version.privileged_creators:
        extra = create_content.get("additional_creators", [])
        if not isinstance(extra, list) or not all(isinstance(u, str) and UserID.is_valid(u) for u in extra):
            raise MatrixError(400, "additional_creators must be a list of user ids", Codes.INVALID_PARAM)
        merged = [u for u in extra if u != creator]
        if preset == "trusted_private_chat":
            merged += [u for u in invitees if u not in merged]
        if merged:
            create_content["additional_creators"] = list(dict.fromkeys(merged))
        else:
            create_content.pop("additional_creators", None)
    else:
        create_content.pop("additional_creators", None)

    initial_state = _parse_initial_state(body.get("initial_state", []))

    power_levels = default_power_levels(room_version, creator, preset, invitees)
    if ("m.room.power_levels", "") in initial_state:
        power_levels = dict(initial_state.pop(("m.room.power_levels", "")))
    override = body.get("power_level_content_override")
    if override is not None:
        if not isinstance(override, dict):
            raise BadJsonError("power_level_content_override must be an object")
        power_levels.update(override)

    events: list[PlannedEvent] = [
        PlannedEvent("m.room.member", creator, {"membership": "join"}),
        PlannedEvent("m.room.power_levels", "", power_levels),
    ]

    alias_name = body.get("room_alias_name")
    if alias_name is not None:
        if not isinstance(alias_name, str) or not alias_name or ":" in alias_name or "#" in alias_name \
                or any(c.isspace() for c in alias_name):
            raise MatrixError(400, "room_alias_name must be a non-empty local part", Codes.INVALID_PARAM)
        full = f"#{alias_name}:{server_name}"
        if len(full.encode()) > 255:
            raise MatrixError(400, "room alias too long", Codes.INVALID_PARAM)
        events.append(PlannedEvent("m.room.canonical_alias", "", {"alias": full}))

    join_rule, history, guest = PRESETS[preset]
    for etype, preset_content in (
        ("m.room.join_rules", {"join_rule": join_rule}),
        ("m.room.history_visibility", {"history_visibility": history}),
        ("m.room.guest_access", {"guest_access": guest}),
    ):
        if (etype, "") not in initial_state:
            events.append(PlannedEvent(etype, "", preset_content))

    name = body.get("name")
    topic = body.get("topic")
    if name is not None and not isinstance(name, str):
        raise BadJsonError("name must be a string")
    if topic is not None and not isinstance(topic, str):
        raise BadJsonError("topic must be a string")
    if name is not None:
        initial_state.pop(("m.room.name", ""), None)
    if topic is not None:
        initial_state.pop(("m.room.topic", ""), None)
    for (etype, skey), state_content in initial_state.items():
        events.append(PlannedEvent(etype, skey, state_content))
    if name is not None:
        events.append(PlannedEvent("m.room.name", "", {"name": name}))
    if topic is not None:
        events.append(PlannedEvent("m.room.topic", "", {
            "topic": topic, "m.topic": [{"mimetype": "text/plain", "body": topic}],
        }))

    for invitee in invitees:
        invite_content: JsonDict = {"membership": "invite"}
        if is_direct:
            invite_content["is_direct"] = True
        events.append(PlannedEvent("m.room.member", invitee, invite_content))

    return RoomCreationPlan(
        create_content=create_content,
        events=tuple(events),
        invitees=tuple(invitees),
        preset=preset,
        visibility=visibility,
    )


def _parse_invitees(raw: Any, creator: str) -> list[str]:
    if not isinstance(raw, list):
        raise BadJsonError("invite must be a list of user ids")
    out: list[str] = []
    for u in raw:
        if not isinstance(u, str) or not UserID.is_valid(u):
            raise MatrixError(400, f"Invalid user id in invite: {u!r}", Codes.INVALID_PARAM)
        if u != creator and u not in out:
            out.append(u)
    return out


def _parse_initial_state(raw: Any) -> dict[tuple[str, str], JsonDict]:
    """initial_state entries by (type, state_key); later entries win, order of first appearance kept."""
    if not isinstance(raw, list):
        raise BadJsonError("initial_state must be a list")
    out: dict[tuple[str, str], JsonDict] = {}
    for entry in raw:
        if not isinstance(entry, dict):
            raise BadJsonError("initial_state entries must be objects")
        etype = entry.get("type")
        skey = entry.get("state_key", "")
        content = entry.get("content")
        if not isinstance(etype, str) or not etype:
            raise BadJsonError("initial_state entry needs a string 'type'")
        if not isinstance(skey, str):
            raise BadJsonError("initial_state state_key must be a string")
        if not isinstance(content, dict):
            raise BadJsonError("initial_state entry needs an object 'content'")
        if etype in ("m.room.create", "m.room.member"):
            raise MatrixError(400, f"{etype} cannot be set in initial_state", Codes.INVALID_PARAM)
        out[(etype, skey)] = content
    return out
