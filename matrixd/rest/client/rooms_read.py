"""Reading rooms: ``/messages``, ``/context``, ``/event``, ``/members``, ``/joined_members``."""

from __future__ import annotations

from matrixd.handlers.filtering import parse_room_event_filter
from matrixd.handlers.rooms.context import EventContextHandler
from matrixd.handlers.rooms.members import RoomMembersHandler
from matrixd.handlers.rooms.messages import PaginationHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_integer, parse_json_object_from_query, parse_string
from matrixd.types import JsonDict

MEMBERSHIPS = ("join", "invite", "knock", "leave", "ban")


class RoomMessagesServlet(RestServlet):
    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]*)/messages")
    CANCEL_ON_DISCONNECT = frozenset({"GET"})

    def __init__(self, auth: Auth, handler: PaginationHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        direction = parse_string(request, "dir", required=True, allowed_values=("b", "f"))
        event_filter = parse_room_event_filter(parse_json_object_from_query(request, "filter"))
        body = await self._handler.get_messages(
            requester, room_id,
            direction="b" if direction == "b" else "f",
            from_token=parse_string(request, "from"),
            to_token=parse_string(request, "to"),
            limit=parse_integer(request, "limit"),
            event_filter=event_filter,
        )
        return 200, body


class RoomEventContextServlet(RestServlet):
    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]*)/context/(?P<event_id>[^/]*)")
    CANCEL_ON_DISCONNECT = frozenset({"GET"})

    def __init__(self, auth: Auth, handler: EventContextHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest, room_id: str, event_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        event_filter = parse_room_event_filter(parse_json_object_from_query(request, "filter"))
        body = await self._handler.get_event_context(
            requester, room_id, event_id, limit=parse_integer(request, "limit"), event_filter=event_filter
        )
        return 200, body


class RoomEventServlet(RestServlet):
    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]*)/event/(?P<event_id>[^/]*)")

    def __init__(self, auth: Auth, handler: EventContextHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest, room_id: str, event_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        return 200, await self._handler.get_event(requester, room_id, event_id)


class RoomMembersServlet(RestServlet):
    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]*)/members")

    def __init__(self, auth: Auth, handler: RoomMembersHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        chunk = await self._handler.get_members(
            requester, room_id,
            at=parse_string(request, "at"),
            membership=parse_string(request, "membership", allowed_values=MEMBERSHIPS),
            not_membership=parse_string(request, "not_membership", allowed_values=MEMBERSHIPS),
        )
        return 200, {"chunk": chunk}


class JoinedMembersServlet(RestServlet):
    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]*)/joined_members")

    def __init__(self, auth: Auth, handler: RoomMembersHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        return 200, {"joined": await self._handler.get_joined_members(requester, room_id)}
