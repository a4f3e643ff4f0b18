"""The identifier checks the authorization rules need, per the historical grammar.

Auth rules must accept every user id that can appear in existing rooms, so these
follow the appendix's *historical* user id grammar (any code point but ``:`` and
NUL in the localpart, even empty), not the stricter grammar for new accounts.
"""

from __future__ import annotations

import re

from matrixd.api.errors import AuthError
from matrixd.types import MAX_USER_ID_LENGTH, is_valid_server_name

# "@" localpart ":" server_name, the server name being an IPv6 literal or a
# DNS name / IPv4 literal, with an optional port.  One regex so that checking
# the thousands of keys of a large ``users`` map stays cheap.
_USER_ID = re.compile(r"@[^:\x00]*:(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.\-]{1,255})(?::[0-9]{1,5})?")


def is_valid_user_id(value: object) -> bool:
    """Whether ``value`` is ``@localpart:server_name`` under the historical grammar."""
    if not isinstance(value, str) or _USER_ID.fullmatch(value) is None:
        return False
    if value.isascii():
        if len(value) > MAX_USER_ID_LENGTH:
            return False
    else:
        try:
            if len(value.encode("utf-8")) > MAX_USER_ID_LENGTH:
                return False
        except UnicodeEncodeError:  # a lone surrogate is not a legal code point
            return False
    server_name = value.partition(":")[2]
    # Only the port range is left for the full server name check.
    return ":" not in server_name.rpartition("]")[2] or is_valid_server_name(server_name)


def domain_of(identifier: object, what: str) -> str:
    """The part after the first ``:`` of a user, room or v1 event id.

    Raises AuthError naming ``what`` when there is none: an id without a domain
    cannot satisfy a rule that compares domains.
    """
    if isinstance(identifier, str):
        _, sep, domain = identifier.partition(":")
        if sep:
            return domain
    raise AuthError(403, f"{what} {identifier!r} has no domain")
