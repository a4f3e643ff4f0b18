"""Room creation and membership servlets.

``/createRoom``, ``/join/{roomIdOrAlias}``, ``/knock/{roomIdOrAlias}``, ``/rooms/{roomId}/<action>``
(join, invite, leave, forget, kick, ban, unban) and ``/joined_rooms``.
"""

from __future__ import annotations

from typing import Optional

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.rooms.create import RoomCreationHandler
from matrixd.handlers.rooms.members import RoomMembersHandler
from matrixd.handlers.rooms.membership_requests import MembershipRequestHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request, parse_strings_from_args
from matrixd.types import JsonDict


def _reason(body: JsonDict) -> Optional[str]:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise MatrixError(400, "reason must be a string", Codes.BAD_JSON)
    return reason


def _servers(request: MatrixRequest) -> list[str]:
    """``via`` (v1.12+) then the deprecated ``server_name``: where to join a remote room through."""
    args = request.args or {}
    via = parse_strings_from_args(args, "via", default=[])
    return [*via, *parse_strings_from_args(args, "server_name", default=[])]


class CreateRoomServlet(RestServlet):
    PATTERNS = client_patterns("/createRoom")

    def __init__(self, auth: Auth, handler: RoomCreationHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        if body.get("invite_3pid"):
            raise MatrixError(400, "Third-party invites are not supported by this server", Codes.UNRECOGNIZED)
        room_id = await self._handler.create_room(requester, body)
        return 200, {"room_id": room_id}


class _ByIdOrAliasServlet(RestServlet):
    """``POST /join/{roomIdOrAlias}`` and ``POST /knock/{roomIdOrAlias}``."""

    ACTION = ""

    def __init__(self, auth: Auth, handler: MembershipRequestHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest, room_id_or_alias: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        reason = _reason(body)
        room_id, servers = await self._handler.resolve_room(room_id_or_alias, _servers(request))
        if self.ACTION == "join":
            await self._handler.join(requester, room_id, reason=reason, servers=servers)
        else:
            await self._handler.knock(requester, room_id, reason=reason, servers=servers)
        return 200, {"room_id": room_id}


class JoinRoomByIdOrAliasServlet(_ByIdOrAliasServlet):
    PATTERNS = client_patterns("/join/(?P<room_id_or_alias>[^/]*)")
    ACTION = "join"


class KnockServlet(_ByIdOrAliasServlet):
    PATTERNS = client_patterns("/knock/(?P<room_id_or_alias>[^/]*)")
    ACTION = "knock"


class _RoomMembershipServlet(RestServlet):
    """``POST /rooms/{roomId}/<action>``; guests may only join and leave."""

    ACTION = ""

    def __init__(self, auth: Auth, handler: MembershipRequestHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        action = self.ACTION
        requester = await self._auth.get_user_by_req(request, allow_guest=action in ("join", "leave"))
        body = parse_json_object_from_request(request, allow_empty_body=True)
        if action == "join":
            await self._handler.join(requester, room_id, reason=_reason(body), servers=_servers(request))
            return 200, {"room_id": room_id}
        if action == "invite":
            await self._handler.invite(requester, room_id, body)
        elif action == "leave":
            await self._handler.leave(requester, room_id, _reason(body))
        elif action == "forget":
            await self._handler.forget(requester, room_id)
        else:
            await self._handler.change_other(requester, room_id, action, body)
        return 200, {}


def _membership_servlet(action: str) -> type[_RoomMembershipServlet]:
    return type(
        f"Room{action.capitalize()}Servlet",
        (_RoomMembershipServlet,),
        {"ACTION": action, "PATTERNS": client_patterns(f"/rooms/(?P<room_id>[^/]*)/{action}")},
    )


#: One servlet per ``/rooms/{roomId}/<action>`` endpoint.
ROOM_MEMBERSHIP_SERVLETS = tuple(
    _membership_servlet(action) for action in ("join", "invite", "leave", "forget", "kick", "ban", "unban")
)


class JoinedRoomsServlet(RestServlet):
    PATTERNS = client_patterns("/joined_rooms")

    def __init__(self, auth: Auth, handler: RoomMembersHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        return 200, {"joined_rooms": await self._handler.get_joined_rooms(requester)}
