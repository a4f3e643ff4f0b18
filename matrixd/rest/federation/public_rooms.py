"""``GET`` and ``POST /_matrix/federation/v1/publicRooms``: this server's published room directory.

Off unless ``allow_public_rooms_over_federation`` is set (403 ``M_FORBIDDEN``).
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, Sequence

from matrixd.api.errors import AuthError, BadJsonError, Codes
from matrixd.federation.transport.server import BaseFederationServlet, FederationAuthenticator, JsonDict
from matrixd.http.request import MatrixRequest
from matrixd.http.server import federation_patterns
from matrixd.http.servlet import parse_boolean, parse_integer, parse_string


class PublicRoomSource(Protocol):
    """``matrixd.federation.public_rooms.PublicRoomList`` or any fuller directory."""

    async def get_public_rooms(
        self,
        limit: Optional[int] = None,
        since: Optional[str] = None,
        search_term: Optional[str] = None,
        room_types: Optional[Sequence[Optional[str]]] = None,
        third_party_instance_id: Optional[str] = None,
    ) -> JsonDict: ...


class PublicRoomsServlet(BaseFederationServlet):
    PATTERNS = federation_patterns("/publicRooms")

    def __init__(self, authenticator: FederationAuthenticator, directory: PublicRoomSource, enabled: bool) -> None:
        super().__init__(authenticator)
        self._directory = directory
        self._enabled = enabled

    def _check_enabled(self, origin: str) -> None:
        if not self._enabled:
            raise AuthError(403, "This server does not share its room directory over federation", Codes.FORBIDDEN)

    async def on_GET(self, origin: str, content: None, request: MatrixRequest) -> tuple[int, JsonDict]:
        self._check_enabled(origin)
        limit = parse_integer(request, "limit")
        since = parse_string(request, "since")
        parse_boolean(request, "include_all_networks", False)
        instance = parse_string(request, "third_party_instance_id")
        return 200, await self._directory.get_public_rooms(limit, since, None, None, instance)

    async def on_POST(self, origin: str, content: Optional[JsonDict], request: MatrixRequest) -> tuple[int, JsonDict]:
        assert content is not None
        self._check_enabled(origin)
        limit = _optional(content, "limit", int)
        if limit is not None and limit < 0:
            raise BadJsonError("'limit' must not be negative")
        since = _optional(content, "since", str)
        _optional(content, "include_all_networks", bool)
        instance = _optional(content, "third_party_instance_id", str)
        search_term: Optional[str] = None
        room_types: Optional[list[Optional[str]]] = None
        flt = content.get("filter")
        if flt is not None:
            if not isinstance(flt, dict):
                raise BadJsonError("'filter' must be an object")
            search_term = _optional(flt, "generic_search_term", str)
            types = flt.get("room_types")
            if types is not None:
                if not isinstance(types, list) or not all(t is None or isinstance(t, str) for t in types):
                    raise BadJsonError("'filter.room_types' must be a list of strings and nulls")
                room_types = types
        return 200, await self._directory.get_public_rooms(limit, since, search_term, room_types, instance)


def _optional(obj: JsonDict, name: str, kind: type) -> Any:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadJsonError(f"'{name}' must be a {kind.__name__}")
    return value
