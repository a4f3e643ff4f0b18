"""``/room_keys/version`` and ``/room_keys/keys``: server-side key backups."""

from __future__ import annotations

from typing import Optional

from matrixd.handlers.e2e.backup import KeyBackupHandler, parse_room_key, parse_sessions
from matrixd.handlers.e2e.signing import require_dict
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request, parse_string
from matrixd.storage.room_keys import RoomKey
from matrixd.types import JsonDict


class RoomKeysVersionServlet(RestServlet):
    """``POST`` creates a backup version; ``GET`` describes the latest."""

    PATTERNS = client_patterns("/room_keys/version", releases=("v3",), unstable=True)

    def __init__(self, auth: Auth, handler: KeyBackupHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request)
        return 200, await self._handler.create_version(requester.user_id, body)

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        return 200, await self._handler.get_version_info(requester.user_id, None)


class RoomKeysVersionByIdServlet(RestServlet):
    PATTERNS = client_patterns("/room_keys/version/(?P<version>[^/]*)", releases=("v3",), unstable=True)

    def __init__(self, auth: Auth, handler: KeyBackupHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest, version: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        return 200, await self._handler.get_version_info(requester.user_id, version)

    async def on_PUT(self, request: MatrixRequest, version: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request)
        await self._handler.update_version(requester.user_id, version, body)
        return 200, {}

    async def on_DELETE(self, request: MatrixRequest, version: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        await self._handler.delete_version(requester.user_id, version)
        return 200, {}


class RoomKeysServlet(RestServlet):
    """The keys of a backup at three levels: all rooms, one room, one session."""

    PATTERNS = client_patterns(
        "/room_keys/keys(?:/(?P<room_id>[^/]+)(?:/(?P<session_id>[^/]+))?)?", releases=("v3",), unstable=True
    )

    def __init__(self, auth: Auth, handler: KeyBackupHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest, room_id: Optional[str] = None,
                     session_id: Optional[str] = None) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        version = parse_string(request, "version", required=True)
        return 200, await self._handler.get_keys(requester.user_id, version, room_id, session_id)

    async def on_PUT(self, request: MatrixRequest, room_id: Optional[str] = None,
                     session_id: Optional[str] = None) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        version = parse_string(request, "version", required=True)
        body = parse_json_object_from_request(request)
        keys: dict[str, dict[str, RoomKey]]
        if session_id is not None and room_id is not None:
            keys = {room_id: {session_id: parse_room_key(body, "body")}}
        elif room_id is not None:
            keys = {room_id: parse_sessions(body, "")}
        else:
            rooms = require_dict(body.get("rooms"), "rooms")
            keys = {rid: parse_sessions(value, f"rooms.{rid}") for rid, value in rooms.items()}
        return 200, await self._handler.put_keys(requester.user_id, version, keys)

    async def on_DELETE(self, request: MatrixRequest, room_id: Optional[str] = None,
                        session_id: Optional[str] = None) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        version = parse_string(request, "version", required=True)
        return 200, await self._handler.delete_keys(requester.user_id, version, room_id, session_id)


def room_keys_servlets(auth: Auth, handler: KeyBackupHandler) -> list[RestServlet]:
    return [RoomKeysVersionServlet(auth, handler), RoomKeysVersionByIdServlet(auth, handler),
            RoomKeysServlet(auth, handler)]
