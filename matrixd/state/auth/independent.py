"""The authorization rules that look only at the event and the auth events it cites.

These are the create-event rules, the v12 rule that the room id names an
accepted create event, and the checks on the ``auth_events`` list itself
(duplicates, entries outside the selection, rejected entries, a missing create
event before v12, room id mismatches).  Also here: the v8+ rule that a member
event naming ``join_authorised_via_users_server`` carries that server's
signature, since it depends on nothing but the event.

They run once, on receipt or creation.  State resolution re-runs only the
state-dependent rules.
"""

from __future__ import annotations

from typing import Mapping, Optional

from matrixd.api.errors import AuthError
from matrixd.events.event import Event
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from matrixd.state.auth.constants import CREATE, CREATE_KEY, JOIN_AUTHORISED_VIA, MEMBER
from matrixd.state.auth.identifiers import domain_of, is_valid_user_id
from matrixd.state.auth.selection import auth_types_for_event


def check_state_independent_auth_rules(
    room_version: RoomVersion,
    event: Event,
    auth_events: Mapping[str, Event],
    create_event: Optional[Event] = None,
) -> None:
    """Raise AuthError if ``event`` fails a rule that needs no room state.

    Args:
        auth_events: event id -> event for (at least) every id in
            ``event.auth_event_ids()``; an id missing here rejects the event.
        create_event: the room's create event.  Needed from room v12, where the
            room id is derived from it and it is not among the auth events;
            ignored before.
    """
    if event.type == CREATE:
        check_create_event(room_version, event)
        return
    if room_version.room_id_is_create_event_hash:
        _check_room_id_names_create_event(event, create_event)

    expected = auth_types_for_event(room_version, event)
    room_id = event.room_id
    seen: set[tuple[str, str]] = set()
    for auth_id in event.auth_event_ids():
        auth_event = auth_events.get(auth_id)
        if auth_event is None:
            raise AuthError(403, f"auth event {auth_id} is not known")
        state_key = auth_event.state_key
        if state_key is None:
            raise AuthError(403, f"auth event {auth_id} is not a state event")
        key = (auth_event.type, state_key)
        if key in seen:
            raise AuthError(403, f"auth_events lists {key} more than once")
        seen.add(key)
        if key not in expected:
            raise AuthError(403, f"auth event {auth_id} {key} is not one the auth events selection picks")
        if auth_event.rejected:
            raise AuthError(403, f"auth event {auth_id} was rejected")
        if auth_event.room_id != room_id:
            raise AuthError(403, f"auth event {auth_id} is in room {auth_event.room_id}, not {room_id}")
    if not room_version.room_id_is_create_event_hash and CREATE_KEY not in seen:
        raise AuthError(403, "auth_events has no m.room.create event")

    if room_version.restricted_join_rule and event.type == MEMBER:
        _check_authorising_server_signed(event)


def check_create_event(room_version: RoomVersion, event: Event) -> None:
    """The ``m.room.create`` rule; returning means the create event is allowed."""
    if event.get("prev_events"):
        raise AuthError(403, "create event has prev_events")
    if room_version.room_id_is_create_event_hash:
        if event.has("room_id"):
            raise AuthError(403, "create event may not have a room_id in this room version")
    else:
        room_id = event.get("room_id")
        if domain_of(room_id, "room id") != domain_of(event.sender, "sender"):
            raise AuthError(403, f"create event's room id {room_id} is not on the sender's server")
    content = event.content
    if "room_version" in content:
        version = content["room_version"]
        if not isinstance(version, str) or version not in KNOWN_ROOM_VERSIONS:
            raise AuthError(403, f"create event names unknown room version {version!r}")
    if not room_version.implicit_room_creator and "creator" not in content:
        raise AuthError(403, "create event has no content.creator")
    if room_version.privileged_creators and "additional_creators" in content:
        extra = content["additional_creators"]
        if not isinstance(extra, list) or not all(is_valid_user_id(u) for u in extra):
            raise AuthError(403, "create event's additional_creators must be a list of user ids")


def _check_room_id_names_create_event(event: Event, create_event: Optional[Event]) -> None:
    """Room v12+: the room id is ``!`` + the id of an accepted create event."""
    room_id = event.get("room_id")
    if not isinstance(room_id, str) or not room_id.startswith("!"):
        raise AuthError(403, f"invalid room id {room_id!r}")
    if create_event is None:
        raise AuthError(403, f"the create event of room {room_id} is not known")
    if create_event.event_id != "$" + room_id[1:]:
        raise AuthError(403, f"room id {room_id} does not name create event {create_event.event_id}")
    if create_event.type != CREATE or create_event.state_key != "":
        raise AuthError(403, f"room id {room_id} names an event that is not a create event")
    if create_event.rejected:
        raise AuthError(403, f"the create event of room {room_id} was rejected")


def _check_authorising_server_signed(event: Event) -> None:
    """v8+: a member event naming an authorising user must carry its server's signature.

    Only presence is checked here: verifying the signature needs that server's
    keys, so it belongs to signature checking on receipt, which must verify
    this signature along with the sender's.
    """
    content = event.content
    if JOIN_AUTHORISED_VIA not in content:
        return
    authoriser = content[JOIN_AUTHORISED_VIA]
    if not isinstance(authoriser, str):
        raise AuthError(403, f"{JOIN_AUTHORISED_VIA} must be a user id")
    server = domain_of(authoriser, JOIN_AUTHORISED_VIA)
    signatures = event.signatures.get(server)
    if not isinstance(signatures, dict) or not signatures:
        raise AuthError(403, f"member event is not signed by {server}, the server of {JOIN_AUTHORISED_VIA}")
