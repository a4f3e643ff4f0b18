"""The room directory: aliases (``/directory/room``, ``/rooms/{roomId}/aliases``), listing
(``/directory/list/room``) and ``/publicRooms``."""

from __future__ import annotations

from typing import Any, Optional

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.rooms.aliases import RoomAliasHandler
from matrixd.handlers.rooms.directory import RoomDirectoryHandler, parse_directory_filter
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import has_access_token, parse_integer, parse_json_object_from_request, parse_string
from matrixd.types import JsonDict


class RoomAliasServlet(RestServlet):
    PATTERNS = client_patterns("/directory/room/(?P<room_alias>[^/]*)")

    def __init__(self, auth: Auth, handler: RoomAliasHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest, room_alias: str) -> tuple[int, JsonDict]:
        # Resolving aliases needs no account (the spec lists no security for it).
        target = await self._handler.resolve(room_alias)
        return 200, {"room_id": target.room_id, "servers": list(target.servers)}

    async def on_PUT(self, request: MatrixRequest, room_alias: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request)
        if "room_id" not in body:
            raise MatrixError(400, "Missing room_id", Codes.MISSING_PARAM)
        await self._handler.create_alias(requester, room_alias, body["room_id"])
        return 200, {}

    async def on_DELETE(self, request: MatrixRequest, room_alias: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        await self._handler.delete_alias(requester, room_alias)
        return 200, {}


class RoomAliasesServlet(RestServlet):
    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]*)/aliases")

    def __init__(self, auth: Auth, handler: RoomAliasHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        return 200, {"aliases": await self._handler.get_room_aliases(requester, room_id)}


class DirectoryListServlet(RestServlet):
    PATTERNS = client_patterns("/directory/list/room/(?P<room_id>[^/]*)")

    def __init__(self, auth: Auth, handler: RoomDirectoryHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        return 200, {"visibility": await self._handler.get_visibility(room_id)}

    async def on_PUT(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        visibility = body.get("visibility", "public")
        if not isinstance(visibility, str):
            raise MatrixError(400, "visibility must be 'public' or 'private'", Codes.INVALID_PARAM)
        await self._handler.set_visibility(requester, room_id, visibility)
        return 200, {}


def _optional(body: JsonDict, name: str, kind: type, what: str) -> Any:
    value = body.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
        raise MatrixError(400, f"{name} must be {what}", Codes.BAD_JSON)
    return value


class PublicRoomsServlet(RestServlet):
    PATTERNS = client_patterns("/publicRooms")

    def __init__(self, auth: Auth, handler: RoomDirectoryHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        if has_access_token(request):
            await self._auth.get_user_by_req(request, allow_guest=True)
        body = await self._handler.get_public_rooms(
            server=parse_string(request, "server"),
            limit=parse_integer(request, "limit"),
            since=parse_string(request, "since"),
        )
        return 200, body

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.get_user_by_req(request, allow_guest=True)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        limit: Optional[int] = _optional(body, "limit", int, "an integer")
        if limit is not None and limit < 0:
            raise MatrixError(400, "limit must not be negative", Codes.INVALID_PARAM)
        result = await self._handler.get_public_rooms(
            server=parse_string(request, "server"),
            limit=limit,
            since=_optional(body, "since", str, "a string"),
            query=parse_directory_filter(body.get("filter")),
            third_party_instance_id=_optional(body, "third_party_instance_id", str, "a string"),
            include_all_networks=bool(_optional(body, "include_all_networks", bool, "a boolean")),
        )
        return 200, result
