"""Identifier types (user ids, room ids, aliases) and the authenticated requester."""

from __future__ import annotations

import re
from typing import Any, Optional

import attrs

JsonDict = dict[str, Any]

# Appendix "User Identifiers": historical ids may use any printable ASCII except ':';
# new local users must use the strict grammar below.
_STRICT_LOCALPART = re.compile(r"^[a-z0-9._=\-/+]+$")
_HISTORICAL_LOCALPART = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")
# server name: hostname / IPv4 / [IPv6], optional :port
_SERVER_NAME = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.\-]{1,255})(?::[0-9]{1,5})?$"
)
MAX_USER_ID_LENGTH = 255


class IdentifierError(ValueError):
    """A string is not a well-formed Matrix identifier of the expected kind."""


def is_valid_server_name(name: str) -> bool:
    if not _SERVER_NAME.match(name):
        return False
    if ":" in name and not name.startswith("["):
        port = name.rsplit(":", 1)[1]
        return 0 < int(port) < 65536
    if name.startswith("[") and "]:" in name:
        return 0 < int(name.rsplit(":", 1)[1]) < 65536
    return True


def is_strict_localpart(localpart: str) -> bool:
    return bool(_STRICT_LOCALPART.match(localpart))


@attrs.frozen(slots=True)
class DomainSpecificId:
    """``<sigil><localpart>:<domain>`` identifiers."""

    localpart: str
    domain: str
    SIGIL = ""

    @classmethod
    def from_string(cls, s: str) -> Any:
        if not isinstance(s, str) or len(s) < 3 or s[0] != cls.SIGIL or ":" not in s:
            raise IdentifierError(f"{s!r} is not a valid {cls.__name__}")
        local, _, domain = s[1:].partition(":")
        if not local or not is_valid_server_name(domain):
            raise IdentifierError(f"{s!r} is not a valid {cls.__name__}")
        return cls(local, domain)

    @classmethod
    def is_valid(cls, s: str) -> bool:
        try:
            cls.from_string(s)
            return True
        except IdentifierError:
            return False

    def to_string(self) -> str:
        return f"{self.SIGIL}{self.localpart}:{self.domain}"

    def __str__(self) -> str:
        return self.to_string()


@attrs.frozen(slots=True)
class UserID(DomainSpecificId):
    SIGIL = "@"

    @classmethod
    def from_string(cls, s: str) -> "UserID":
        uid: UserID = super().from_string(s)
        if len(s) > MAX_USER_ID_LENGTH or not _HISTORICAL_LOCALPART.match(uid.localpart):
            raise IdentifierError(f"{s!r} is not a valid user id")
        return uid


@attrs.frozen(slots=True)
class RoomAlias(DomainSpecificId):
    SIGIL = "#"

    @classmethod
    def from_string(cls, s: str) -> "RoomAlias":
        alias: RoomAlias = super().from_string(s)
        if len(s) > 255:
            raise IdentifierError("room alias too long")
        return alias


def get_domain_from_id(s: str) -> str:
    """The server part of a ``@user:domain``-style id; raises IdentifierError if absent."""
    idx = s.find(":")
    if idx == -1:
        raise IdentifierError(f"{s!r} has no domain")
    return s[idx + 1 :]


def is_valid_room_id(s: object) -> bool:
    """``!opaque:domain`` (v1-v11) or ``!<43 url-safe base64 chars>`` (v12)."""
    if not isinstance(s, str) or len(s) < 2 or s[0] != "!" or len(s) > 255:
        return False
    return True


@attrs.frozen(slots=True)
class Requester:
    """Who is making a client request, as established from the access token."""

    user_id: str
    device_id: Optional[str]
    access_token_id: Optional[int]
    is_guest: bool = False
    app_service_id: Optional[str] = None
    shadow_banned: bool = False
