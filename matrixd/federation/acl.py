"""Server ACLs (``m.room.server_acl``): which servers may take part in a room.

The rules of the event's description, in order: no ACL event, allow; an IP
literal server name when ``allow_ip_literals`` is ``false``, deny; a match in
``deny``, deny; a match in ``allow``, allow; otherwise deny. Patterns are
case-insensitive globs (``*`` any run of characters, ``?`` one character)
matched against the server name without its port. Entries that are not
strings are ignored; a missing or malformed ``allow`` allows nobody.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Mapping, Optional, Pattern

from matrixd.api.errors import AuthError, Codes
from matrixd.storage.cache import LruCache
from matrixd.storage.current_state import CurrentStateStore

SERVER_ACL = "m.room.server_acl"


def _glob_to_regex(glob: str) -> Pattern[str]:
    parts = []
    for c in glob:
        if c == "*":
            parts.append(".*")
        elif c == "?":
            parts.append(".")
        else:
            parts.append(re.escape(c))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _host_of(server_name: str) -> str:
    if server_name.startswith("["):
        return server_name[: server_name.find("]") + 1] if "]" in server_name else server_name
    return server_name.rsplit(":", 1)[0] if ":" in server_name else server_name


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class CompiledAcl:
    """An ACL event's content, with its globs compiled once."""

    def __init__(self, content: Mapping[str, Any]) -> None:
        allow_ip = content.get("allow_ip_literals", True)
        self.allow_ip_literals = allow_ip if isinstance(allow_ip, bool) else True
        self.allow = self._patterns(content.get("allow"))
        self.deny = self._patterns(content.get("deny"))

    @staticmethod
    def _patterns(value: Any) -> tuple[Pattern[str], ...]:
        if not isinstance(value, list):
            return ()
        return tuple(_glob_to_regex(v) for v in value if isinstance(v, str))

    def allows(self, server_name: str) -> bool:
        host = _host_of(server_name)
        if not self.allow_ip_literals and _is_ip_literal(host):
            return False
        if any(p.fullmatch(host) for p in self.deny):
            return False
        return any(p.fullmatch(host) for p in self.allow)


def server_matches_acl(server_name: str, acl_content: Optional[Mapping[str, Any]]) -> bool:
    """Whether ``server_name`` may take part under an ACL content (None: no ACL, allowed)."""
    if acl_content is None:
        return True
    return CompiledAcl(acl_content).allows(server_name)


class ServerAclChecker:
    """Applies the current ``m.room.server_acl`` of a room to requesting servers."""

    def __init__(self, current_state: CurrentStateStore) -> None:
        self._current_state = current_state
        self._compiled: LruCache[str, CompiledAcl] = LruCache("server_acl_compiled", 1000)

    async def is_server_allowed(self, server_name: str, room_id: str) -> bool:
        event = await self._current_state.get_current_state_event(room_id, SERVER_ACL, "")
        if event is None:
            return True
        acl = self._compiled.get(event.event_id)
        if acl is None:
            acl = CompiledAcl(event.content)
            self._compiled.set(event.event_id, acl)
        return acl.allows(server_name)

    async def check_server_allowed(self, server_name: str, room_id: str) -> None:
        """Raise 403 ``M_FORBIDDEN`` if the room's server ACL denies ``server_name``."""
        if not await self.is_server_allowed(server_name, room_id):
            raise AuthError(403, f"Server {server_name} is denied by the server ACL of this room", Codes.FORBIDDEN)
