"""``/_synapse/admin`` room endpoints: listing, details, members, state, block,
deletion (asynchronous, with status), history purges and make_room_admin."""

from __future__ import annotations

from typing import Optional

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.admin.deletion import RoomDeletionHandler
from matrixd.handlers.admin.rooms import RoomAdminHandler
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet
from matrixd.http.servlet import parse_integer, parse_json_object_from_request, parse_string
from matrixd.rest.admin import AdminAuth, admin_patterns, parse_offset
from matrixd.types import JsonDict

_ROOM = "(?P<room_id>[^/]*)"


class _RoomServlet(RestServlet):
    def __init__(self, auth: AdminAuth, handler: RoomAdminHandler, deletion: RoomDeletionHandler) -> None:
        self._auth = auth
        self._handler = handler
        self._deletion = deletion


class RoomsListServlet(_RoomServlet):
    PATTERNS = admin_patterns("/rooms")

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.list_rooms(
            start=parse_offset(request), limit=parse_integer(request, "limit", 100, max_value=1000),
            order_by=parse_string(request, "order_by", "name"),
            reverse=parse_string(request, "dir", "f", allowed_values=("f", "b")) == "b",
            search_term=parse_string(request, "search_term"),
        )


class RoomServlet(_RoomServlet):
    PATTERNS = admin_patterns(f"/rooms/{_ROOM}")

    async def on_GET(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.room_details(room_id)

    async def on_DELETE(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        """The v1 delete: starts the same job as v2 and answers with its id (no waiting)."""
        requester = await self._auth.require_admin(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        return 200, {"delete_id": await self._deletion.start_delete(requester, room_id, body)}


class RoomDeleteV2Servlet(_RoomServlet):
    PATTERNS = admin_patterns(f"/rooms/{_ROOM}", "v2")

    async def on_DELETE(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.require_admin(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        return 200, {"delete_id": await self._deletion.start_delete(requester, room_id, body)}


class RoomDeleteStatusServlet(_RoomServlet):
    PATTERNS = admin_patterns(f"/rooms/{_ROOM}/delete_status", "v2")

    async def on_GET(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._deletion.delete_status(room_id=room_id)


class DeleteStatusByIdServlet(_RoomServlet):
    PATTERNS = admin_patterns("/rooms/delete_status/(?P<delete_id>[^/]*)", "v2")

    async def on_GET(self, request: MatrixRequest, delete_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._deletion.delete_status(delete_id=delete_id)


class RoomMembersServlet(_RoomServlet):
    PATTERNS = admin_patterns(f"/rooms/{_ROOM}/members")

    async def on_GET(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.members(room_id)


class RoomStateServlet(_RoomServlet):
    PATTERNS = admin_patterns(f"/rooms/{_ROOM}/state")

    async def on_GET(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.state(room_id)


class RoomBlockServlet(_RoomServlet):
    PATTERNS = admin_patterns(f"/rooms/{_ROOM}/block")

    async def on_GET(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.get_block(room_id)

    async def on_PUT(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.require_admin(request)
        body = parse_json_object_from_request(request)
        block = body.get("block")
        if not isinstance(block, bool):
            raise MatrixError(400, "'block' must be a boolean", Codes.BAD_JSON)
        return 200, await self._handler.set_block(requester, room_id, block)


class MakeRoomAdminServlet(_RoomServlet):
    PATTERNS = admin_patterns(f"/rooms/{_ROOM}/make_room_admin")

    async def on_POST(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.require_admin(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        user_id = body.get("user_id")
        if user_id is not None and not isinstance(user_id, str):
            raise MatrixError(400, "'user_id' must be a string", Codes.BAD_JSON)
        await self._handler.make_room_admin(requester, room_id, user_id)
        return 200, {}


class PurgeHistoryServlet(_RoomServlet):
    PATTERNS = admin_patterns(f"/purge_history/{_ROOM}(?:/(?P<event_id>[^/]*))?")

    async def on_POST(self, request: MatrixRequest, room_id: str,
                      event_id: Optional[str] = None) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        return 200, {"purge_id": await self._deletion.start_purge(room_id, event_id, body)}


class PurgeHistoryStatusServlet(_RoomServlet):
    PATTERNS = admin_patterns("/purge_history_status/(?P<purge_id>[^/]*)")

    async def on_GET(self, request: MatrixRequest, purge_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._deletion.purge_status(purge_id)


def room_admin_servlets(auth: AdminAuth, handler: RoomAdminHandler,
                        deletion: RoomDeletionHandler) -> list[RestServlet]:
    return [cls(auth, handler, deletion) for cls in (
        RoomsListServlet, DeleteStatusByIdServlet, RoomDeleteStatusServlet, RoomServlet, RoomDeleteV2Servlet,
        RoomMembersServlet, RoomStateServlet, RoomBlockServlet, MakeRoomAdminServlet, PurgeHistoryServlet,
        PurgeHistoryStatusServlet,
    )]
