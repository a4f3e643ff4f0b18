"""Auth events selection (server-server API, "Auth events selection").

Which ``(type, state_key)`` pairs of the room state an event must cite as its
``auth_events``.  Event creation uses it to fill ``auth_events``; the
state-independent rules use it to refuse events citing anything else.
"""

from __future__ import annotations

from matrixd.events.event import Event
from matrixd.events.room_versions import RoomVersion
from matrixd.state.auth.constants import (
    CREATE,
    CREATE_KEY,
    INVITE,
    JOIN,
    JOIN_AUTHORISED_VIA,
    JOIN_RULES_KEY,
    KNOCK,
    MEMBER,
    POWER_LEVELS_KEY,
    THIRD_PARTY_INVITE,
)


def auth_types_for_event(room_version: RoomVersion, event: Event) -> list[tuple[str, str]]:
    """The state keys an event's ``auth_events`` are selected from, without duplicates.

    Empty for ``m.room.create``.  The create event itself is selected in rooms
    v1-v11 but never from v12, where the room id stands for it.
    """
    if event.type == CREATE:
        return []
    selected: list[tuple[str, str]] = []
    if not room_version.room_id_is_create_event_hash:
        selected.append(CREATE_KEY)
    selected.append(POWER_LEVELS_KEY)
    selected.append((MEMBER, event.sender))
    if event.type != MEMBER:
        return selected

    target = event.state_key
    if target is not None:
        _add((MEMBER, target), selected)
    membership = event.membership
    if membership in (JOIN, INVITE, KNOCK):
        selected.append(JOIN_RULES_KEY)
    content = event.content
    if membership == INVITE and "third_party_invite" in content:
        token = _third_party_invite_token(content.get("third_party_invite"))
        if token is not None:
            selected.append((THIRD_PARTY_INVITE, token))
    if membership == JOIN and room_version.restricted_join_rule:
        authoriser = content.get(JOIN_AUTHORISED_VIA)
        if isinstance(authoriser, str):
            _add((MEMBER, authoriser), selected)
    return selected


def _add(key: tuple[str, str], selected: list[tuple[str, str]]) -> None:
    if key not in selected:
        selected.append(key)


def _third_party_invite_token(third_party_invite: object) -> str | None:
    """``third_party_invite.signed.token`` if the content has that shape."""
    if not isinstance(third_party_invite, dict):
        return None
    signed = third_party_invite.get("signed")
    if not isinstance(signed, dict):
        return None
    token = signed.get("token")
    return token if isinstance(token, str) else None
