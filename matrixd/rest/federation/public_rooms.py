"""``GET`` and ``POST /_matrix/federation/v1/publicRooms``: this server's published room directory.

Served by the rooms area's ``RoomDirectoryHandler`` (the same listing as the
client API); off unless ``allow_public_rooms_over_federation`` is set (403
``M_FORBIDDEN``). For federation a ``limit`` of 0 means "no limit".
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from matrixd.api.errors import AuthError, BadJsonError, Codes
from matrixd.federation.transport.server import BaseFederationServlet, FederationAuthenticator, JsonDict
from matrixd.handlers.rooms.directory import parse_directory_filter
from matrixd.http.request import MatrixRequest
from matrixd.http.server import federation_patterns
from matrixd.http.servlet import parse_boolean, parse_integer, parse_string
from matrixd.storage.directory import DirectoryQuery


class LocalRoomDirectory(Protocol):
    """What the servlet needs of ``matrixd.handlers.rooms.directory.RoomDirectoryHandler``."""

    async def get_public_rooms(
        self,
        *,
        server: Optional[str] = None,
        limit: Optional[int] = None,
        since: Optional[str] = None,
        query: DirectoryQuery = DirectoryQuery(),
        third_party_instance_id: Optional[str] = None,
        include_all_networks: bool = False,
    ) -> JsonDict: ...


class PublicRoomsServlet(BaseFederationServlet):
    PATTERNS = federation_patterns("/publicRooms")

    def __init__(self, authenticator: FederationAuthenticator, directory: LocalRoomDirectory, enabled: bool) -> None:
        super().__init__(authenticator)
        self._directory = directory
        self._enabled = enabled

    def _check_enabled(self) -> None:
        if not self._enabled:
            raise AuthError(403, "This server does not share its room directory over federation", Codes.FORBIDDEN)

    async def on_GET(self, origin: str, content: None, request: MatrixRequest) -> tuple[int, JsonDict]:
        self._check_enabled()
        limit = parse_integer(request, "limit")
        since = parse_string(request, "since")
        all_networks = parse_boolean(request, "include_all_networks", False)
        instance = parse_string(request, "third_party_instance_id")
        return 200, await self._directory.get_public_rooms(
            limit=limit or None, since=since, third_party_instance_id=instance, include_all_networks=all_networks,
        )

    async def on_POST(self, origin: str, content: Optional[JsonDict], request: MatrixRequest) -> tuple[int, JsonDict]:
        assert content is not None
        self._check_enabled()
        limit = _optional(content, "limit", int)
        if limit is not None and limit < 0:
            raise BadJsonError("'limit' must not be negative")
        since = _optional(content, "since", str)
        all_networks = _optional(content, "include_all_networks", bool) or False
        instance = _optional(content, "third_party_instance_id", str)
        query = parse_directory_filter(content.get("filter"))
        return 200, await self._directory.get_public_rooms(
            limit=limit or None, since=since, query=query, third_party_instance_id=instance,
            include_all_networks=all_networks,
        )


def _optional(obj: JsonDict, name: str, kind: type) -> Any:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadJsonError(f"'{name}' must be a {kind.__name__}")
    return value
