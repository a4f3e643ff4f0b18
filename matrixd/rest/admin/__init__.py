"""Server administration endpoints under ``/_synapse/admin`` (Synapse-compatible
paths, so existing admin tools work).  Served on the client listener."""

from __future__ import annotations

import re
from typing import Pattern

from matrixd.api.errors import AuthError, Codes, MatrixError
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import prefixed_patterns
from matrixd.storage.accounts import UserStore
from matrixd.types import Requester


def parse_offset(request: MatrixRequest, name: str = "from") -> int:
    """A paging offset: ``from`` (or ``next_token``), a non-negative integer given as a string."""
    args = request.args or {}
    raw = (args.get(name.encode()) or args.get(b"next_token") or [b"0"])[0]
    try:
        value = int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise MatrixError(400, f"'{name}' must be a non-negative integer", Codes.INVALID_PARAM) from None
    if value < 0:
        raise MatrixError(400, f"'{name}' must be a non-negative integer", Codes.INVALID_PARAM)
    return value


def admin_patterns(path_regex: str, version: str = "v1") -> list[Pattern[str]]:
    return prefixed_patterns(f"/_synapse/admin/{re.escape(version)}", path_regex)


class AdminAuth:
    """Authenticates a request and requires the requester to be a server admin (403 otherwise)."""

    def __init__(self, auth: Auth, users: UserStore) -> None:
        self._auth = auth
        self._users = users

    async def require_admin(self, request: MatrixRequest) -> Requester:
        requester = await self._auth.get_user_by_req(request)
        user = await self._users.get_user(requester.user_id)
        if user is None or not user.admin:
            raise AuthError(403, "You are not a server admin")
        return requester
