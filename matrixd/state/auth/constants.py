"""Event types, state keys and membership values the authorization rules read."""

from __future__ import annotations

from typing import Final

CREATE: Final = "m.room.create"
MEMBER: Final = "m.room.member"
POWER_LEVELS: Final = "m.room.power_levels"
JOIN_RULES: Final = "m.room.join_rules"
THIRD_PARTY_INVITE: Final = "m.room.third_party_invite"
ALIASES: Final = "m.room.aliases"
REDACTION: Final = "m.room.redaction"

CREATE_KEY: Final = (CREATE, "")
POWER_LEVELS_KEY: Final = (POWER_LEVELS, "")
JOIN_RULES_KEY: Final = (JOIN_RULES, "")

JOIN: Final = "join"
INVITE: Final = "invite"
LEAVE: Final = "leave"
BAN: Final = "ban"
KNOCK: Final = "knock"

PUBLIC: Final = "public"
RESTRICTED: Final = "restricted"
KNOCK_RESTRICTED: Final = "knock_restricted"

JOIN_AUTHORISED_VIA: Final = "join_authorised_via_users_server"
