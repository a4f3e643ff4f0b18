"""The client API servlets of the rooms area, in one list for the role wiring."""

from __future__ import annotations

from matrixd.handlers.rooms.area import RoomsArea
from matrixd.handlers.rooms.create import RoomCreationHandler
from matrixd.handlers.rooms.send import EventSendHandler
from matrixd.http.auth import Auth
from matrixd.http.server import RestServlet
from matrixd.rest.client.directory import (
    DirectoryListServlet,
    PublicRoomsServlet,
    RoomAliasesServlet,
    RoomAliasServlet,
)
from matrixd.rest.client.report import ReportEventServlet, ReportRoomServlet, ReportUserServlet
from matrixd.rest.client.rooms_events import (
    RoomRedactServlet,
    RoomSendServlet,
    RoomStateEventServlet,
    RoomStateServlet,
)
from matrixd.rest.client.rooms_membership import (
    CreateRoomServlet,
    JoinedRoomsServlet,
    ROOM_MEMBERSHIP_SERVLETS,
    JoinRoomByIdOrAliasServlet,
    KnockServlet,
)
from matrixd.rest.client.rooms_read import (
    JoinedMembersServlet,
    RoomEventContextServlet,
    RoomEventServlet,
    RoomMembersServlet,
    RoomMessagesServlet,
)
from matrixd.rest.client.upgrade import RoomUpgradeServlet


def build_rooms_servlets(
    auth: Auth, rooms: RoomsArea, *, room_creation: RoomCreationHandler, send: EventSendHandler
) -> list[RestServlet]:
    return [
        CreateRoomServlet(auth, room_creation),
        JoinRoomByIdOrAliasServlet(auth, rooms.membership_requests),
        KnockServlet(auth, rooms.membership_requests),
        *(servlet(auth, rooms.membership_requests) for servlet in ROOM_MEMBERSHIP_SERVLETS),
        JoinedRoomsServlet(auth, rooms.members),
        RoomSendServlet(auth, send),
        RoomRedactServlet(auth, send),
        RoomStateServlet(auth, rooms.state),
        RoomStateEventServlet(auth, rooms.state),
        RoomMessagesServlet(auth, rooms.messages),
        RoomEventContextServlet(auth, rooms.context),
        RoomEventServlet(auth, rooms.context),
        RoomMembersServlet(auth, rooms.members),
        JoinedMembersServlet(auth, rooms.members),
        RoomAliasServlet(auth, rooms.aliases),
        RoomAliasesServlet(auth, rooms.aliases),
        DirectoryListServlet(auth, rooms.directory),
        PublicRoomsServlet(auth, rooms.directory),
        RoomUpgradeServlet(auth, rooms.upgrade),
        ReportEventServlet(auth, rooms.reports),
        ReportRoomServlet(auth, rooms.reports),
        ReportUserServlet(auth, rooms.reports),
    ]
