"""The ``m.room.member`` rule: join, invite, leave, ban and knock.

Returns when the membership change is allowed, raises AuthError otherwise.
Each rejection names the rule that failed.

A room with no ``m.room.join_rules`` event is treated as ``invite``: the spec
gives no default, and reading it as the most restrictive rule that still lets
an invited user in is what every deployed implementation does (diverging here
would split state between servers).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from matrixd.api.errors import AuthError
from matrixd.events.event import Event
from matrixd.events.room_versions import RoomVersion
from matrixd.state.auth.constants import (
    BAN,
    INVITE,
    JOIN,
    JOIN_AUTHORISED_VIA,
    JOIN_RULES_KEY,
    KNOCK,
    KNOCK_RESTRICTED,
    LEAVE,
    MEMBER,
    PUBLIC,
    RESTRICTED,
    THIRD_PARTY_INVITE,
)
from matrixd.state.auth.levels import AuthState, get_named_level, single_creator, user_level
from matrixd.state.auth.third_party_invite import public_keys_of, signed_matches_public_keys


def check_membership_event(
    room_version: RoomVersion,
    event: Event,
    auth_state: AuthState,
    create_event: Event,
    power_levels_content: Optional[Mapping[str, Any]],
) -> None:
    """Apply the member rule of ``room_version`` to ``event`` against ``auth_state``."""
    target = event.state_key
    membership = event.membership
    if target is None:
        raise AuthError(403, "member event has no state_key")
    if membership is None:
        raise AuthError(403, "member event has no content.membership")

    sender = event.sender
    sender_event = auth_state.get((MEMBER, sender))
    sender_membership = None if sender_event is None else sender_event.membership

    if membership == JOIN:
        _check_join(room_version, event, auth_state, create_event, power_levels_content, sender_membership)
        return

    target_event = auth_state.get((MEMBER, target))
    target_membership = None if target_event is None else target_event.membership

    if membership == INVITE:
        content = event.content
        if "third_party_invite" in content:
            _check_third_party_invite(event, content["third_party_invite"], target_membership, auth_state)
            return
        if sender_membership != JOIN:
            raise AuthError(403, f"inviter {sender} is not joined (membership {sender_membership})")
        if target_membership in (JOIN, BAN):
            raise AuthError(403, f"cannot invite {target}: membership is {target_membership}")
        sender_level = user_level(room_version, sender, power_levels_content, create_event)
        invite_level = get_named_level(room_version, "invite", power_levels_content)
        if sender_level < invite_level:
            raise AuthError(403, f"inviter's power level {sender_level} is below the invite level {invite_level}")
        return

    if membership == LEAVE:
        if sender == target:
            allowed = (INVITE, JOIN, KNOCK) if room_version.knock_join_rule else (INVITE, JOIN)
            if sender_membership in allowed:
                return
            raise AuthError(403, f"{sender} cannot leave with membership {sender_membership}")
        if sender_membership != JOIN:
            raise AuthError(403, f"{sender} cannot kick or unban: not joined (membership {sender_membership})")
        sender_level = user_level(room_version, sender, power_levels_content, create_event)
        if target_membership == BAN:
            ban_level = get_named_level(room_version, "ban", power_levels_content)
            if sender_level < ban_level:
                raise AuthError(403, f"unban needs the ban level {ban_level}; sender has {sender_level}")
        kick_level = get_named_level(room_version, "kick", power_levels_content)
        target_level = user_level(room_version, target, power_levels_content, create_event)
        if sender_level >= kick_level and target_level < sender_level:
            return
        raise AuthError(
            403,
            f"kick needs the kick level {kick_level} and a level above the target's {target_level};"
            f" sender has {sender_level}",
        )

    if membership == BAN:
        if sender_membership != JOIN:
            raise AuthError(403, f"{sender} cannot ban: not joined (membership {sender_membership})")
        sender_level = user_level(room_version, sender, power_levels_content, create_event)
        ban_level = get_named_level(room_version, "ban", power_levels_content)
        target_level = user_level(room_version, target, power_levels_content, create_event)
        if sender_level >= ban_level and target_level < sender_level:
            return
        raise AuthError(
            403,
            f"ban needs the ban level {ban_level} and a level above the target's {target_level};"
            f" sender has {sender_level}",
        )

    if membership == KNOCK and room_version.knock_join_rule:
        join_rule = _join_rule(auth_state)
        knockable = (KNOCK, KNOCK_RESTRICTED) if room_version.knock_restricted_join_rule else (KNOCK,)
        if join_rule not in knockable:
            raise AuthError(403, f"cannot knock: join rule is {join_rule!r}")
        if sender != target:
            raise AuthError(403, "cannot knock on behalf of another user")
        if sender_membership in (BAN, INVITE, JOIN):
            raise AuthError(403, f"cannot knock with membership {sender_membership}")
        return

    raise AuthError(403, f"unknown membership {membership!r}")


def _join_rule(auth_state: AuthState) -> object:
    event = auth_state.get(JOIN_RULES_KEY)
    if event is None:
        return INVITE
    return event.content.get("join_rule", INVITE)


def _check_join(
    room_version: RoomVersion,
    event: Event,
    auth_state: AuthState,
    create_event: Event,
    power_levels_content: Optional[Mapping[str, Any]],
    sender_membership: Optional[str],
) -> None:
    sender = event.sender
    target = event.state_key
    prev_ids = event.prev_event_ids()
    if (
        len(prev_ids) == 1
        and prev_ids[0] == create_event.event_id
        and target == single_creator(room_version, create_event)
    ):
        return
    if sender != target:
        raise AuthError(403, f"{sender} cannot join on behalf of {target}")
    if sender_membership == BAN:
        raise AuthError(403, f"{sender} is banned")

    join_rule = _join_rule(auth_state)
    if join_rule == INVITE or (join_rule == KNOCK and room_version.knock_join_rule):
        if sender_membership in (INVITE, JOIN):
            return
        raise AuthError(403, f"join rule is {join_rule}: {sender} is not invited")
    if (join_rule == RESTRICTED and room_version.restricted_join_rule) or (
        join_rule == KNOCK_RESTRICTED and room_version.knock_restricted_join_rule
    ):
        if sender_membership in (INVITE, JOIN):
            return
        _check_join_authoriser(room_version, event, auth_state, create_event, power_levels_content)
        return
    if join_rule == PUBLIC:
        return
    raise AuthError(403, f"cannot join a room with join rule {join_rule!r}")


def _check_join_authoriser(
    room_version: RoomVersion,
    event: Event,
    auth_state: AuthState,
    create_event: Event,
    power_levels_content: Optional[Mapping[str, Any]],
) -> None:
    """Restricted joins: the authorising user must be joined and able to invite."""
    authoriser = event.content.get(JOIN_AUTHORISED_VIA)
    if not isinstance(authoriser, str):
        raise AuthError(403, f"restricted join without a valid {JOIN_AUTHORISED_VIA}")
    authoriser_event = auth_state.get((MEMBER, authoriser))
    if authoriser_event is None or authoriser_event.membership != JOIN:
        raise AuthError(403, f"{JOIN_AUTHORISED_VIA} {authoriser} is not joined to the room")
    level = user_level(room_version, authoriser, power_levels_content, create_event)
    invite_level = get_named_level(room_version, "invite", power_levels_content)
    if level < invite_level:
        raise AuthError(
            403, f"{JOIN_AUTHORISED_VIA} {authoriser} has level {level}, below the invite level {invite_level}"
        )


def _check_third_party_invite(
    event: Event,
    third_party_invite: object,
    target_membership: Optional[str],
    auth_state: AuthState,
) -> None:
    """The invite rule for a member event carrying ``content.third_party_invite``."""
    if target_membership == BAN:
        raise AuthError(403, f"cannot invite {event.state_key}: banned")
    signed = third_party_invite.get("signed") if isinstance(third_party_invite, dict) else None
    if not isinstance(signed, dict):
        raise AuthError(403, "third_party_invite has no signed object")
    mxid = signed.get("mxid")
    token = signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        raise AuthError(403, "third_party_invite.signed needs mxid and token")
    if mxid != event.state_key:
        raise AuthError(403, f"third_party_invite.signed.mxid {mxid} does not match state_key {event.state_key}")
    invite_event = auth_state.get((THIRD_PARTY_INVITE, token))
    if invite_event is None:
        raise AuthError(403, f"no m.room.third_party_invite with token {token!r}")
    if invite_event.sender != event.sender:
        raise AuthError(403, "sender does not match the sender of the m.room.third_party_invite")
    if not signed_matches_public_keys(signed, public_keys_of(invite_event.content)):
        raise AuthError(403, "third_party_invite.signed is not signed by any key of the m.room.third_party_invite")
