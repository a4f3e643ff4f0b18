"""The authorization rules evaluated against a room state, and the two-step check.

:func:`check_state_dependent_auth_rules` is what state resolution's iterative
auth checks call (thousands of times), and what local event creation and soft
failure call against the current state: it does a handful of dict lookups and
copies nothing.
"""

from __future__ import annotations

from typing import Optional

from matrixd.api.errors import AuthError
from matrixd.events.event import Event
from matrixd.events.room_versions import EventFormat, RoomVersion
from matrixd.state.auth.constants import (
    ALIASES,
    CREATE,
    CREATE_KEY,
    JOIN,
    MEMBER,
    POWER_LEVELS,
    POWER_LEVELS_KEY,
    REDACTION,
    THIRD_PARTY_INVITE,
)
from matrixd.state.auth.identifiers import domain_of
from matrixd.state.auth.independent import check_state_independent_auth_rules
from matrixd.state.auth.levels import AuthState, get_named_level, get_required_level_for_event, user_level
from matrixd.state.auth.membership import check_membership_event
from matrixd.state.auth.power_levels_rules import check_power_levels_event
from matrixd.state.auth.selection import auth_types_for_event


def check_state_dependent_auth_rules(
    room_version: RoomVersion,
    event: Event,
    auth_state: AuthState,
    create_event: Optional[Event] = None,
) -> None:
    """Raise AuthError if ``event`` is not allowed in the room state ``auth_state``.

    Covers every rule after the auth events checks: ``m.federate``, the
    aliases special case (v1-v5), membership, "sender must be joined",
    third-party invite events, required power levels, ``@``-state keys, power
    level changes and the v1/v2 redaction rule.  A create event passes (its
    rules are state-independent).

    Args:
        auth_state: ``(type, state_key) -> event``; needs the create event,
            the power levels, join rules and the relevant member and
            third-party invite events when they exist in the room.
        create_event: used when ``auth_state`` has no create event (room v12
            iterative auth checks start from an empty state).
    """
    event_type = event.type
    if event_type == CREATE:
        return
    create = auth_state.get(CREATE_KEY) or create_event
    if create is None:
        raise AuthError(403, "no m.room.create event in the auth state")
    sender = event.sender

    if create.content.get("m.federate", True) is False:
        if domain_of(sender, "sender") != domain_of(create.sender, "creator"):
            raise AuthError(403, "room is not federated (m.federate is false) and sender is on another server")

    if event_type == ALIASES and room_version.special_case_aliases_auth:
        state_key = event.state_key
        if state_key is None:
            raise AuthError(403, "m.room.aliases event has no state_key")
        if domain_of(sender, "sender") != state_key:
            raise AuthError(403, f"m.room.aliases state_key {state_key!r} is not the sender's server")
        return

    power_levels_event = auth_state.get(POWER_LEVELS_KEY)
    power_levels_content = None if power_levels_event is None else power_levels_event.content

    if event_type == MEMBER:
        check_membership_event(room_version, event, auth_state, create, power_levels_content)
        return

    sender_member = auth_state.get((MEMBER, sender))
    if sender_member is None or sender_member.membership != JOIN:
        raise AuthError(403, f"{sender} is not joined to the room")

    sender_level = user_level(room_version, sender, power_levels_content, create)
    if event_type == THIRD_PARTY_INVITE:
        invite_level = get_named_level(room_version, "invite", power_levels_content)
        if sender_level >= invite_level:
            return
        raise AuthError(403, f"third-party invite needs the invite level {invite_level}; sender has {sender_level}")

    state_key = event.state_key
    required = get_required_level_for_event(room_version, event_type, state_key is not None, power_levels_content)
    if required > sender_level:
        raise AuthError(403, f"sending {event_type} needs power level {required}; sender has {sender_level}")

    if state_key is not None and state_key.startswith("@") and state_key != sender:
        raise AuthError(403, f"state_key {state_key} starts with @ but is not the sender")

    if event_type == POWER_LEVELS:
        check_power_levels_event(room_version, event, sender_level, power_levels_content, create)
        return

    # Rooms v1 and v2 (the only ones whose event ids carry a domain) auth redactions.
    if event_type == REDACTION and room_version.event_format == EventFormat.V1:
        redact_level = get_named_level(room_version, "redact", power_levels_content)
        if sender_level >= redact_level:
            return
        redacts = event.redacts
        redacted_domain = None if redacts is None else _id_domain(redacts)
        if redacted_domain is not None and redacted_domain == _id_domain(event.event_id):
            return
        raise AuthError(
            403,
            f"redaction needs the redact level {redact_level} (sender has {sender_level})"
            " or an event from the redaction's own server",
        )


def _id_domain(event_id: str) -> Optional[str]:
    _, sep, domain = event_id.partition(":")
    return domain if sep else None


def check_auth(
    room_version: RoomVersion,
    event: Event,
    auth_state: AuthState,
    create_event: Optional[Event] = None,
) -> None:
    """Both rule sets, with ``auth_state`` also supplying the cited auth events.

    For local event creation: ``event.auth_event_ids()`` must name events of
    ``auth_state`` (as selected by :func:`auth_types_for_event`).
    """
    create = auth_state.get(CREATE_KEY) or create_event
    auth_events: dict[str, Event] = {}
    for key in auth_types_for_event(room_version, event):
        cited = auth_state.get(key)
        if cited is not None:
            auth_events[cited.event_id] = cited
    if create is not None:
        auth_events[create.event_id] = create
    check_state_independent_auth_rules(room_version, event, auth_events, create)
    check_state_dependent_auth_rules(room_version, event, auth_state, create)
