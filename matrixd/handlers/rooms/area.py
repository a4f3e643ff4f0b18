"""The rooms area's handlers and stores, as one value the role wiring builds (``matrixd.app.master``)."""

from __future__ import annotations

import attrs

from matrixd.handlers.rooms.access import RoomAccessChecker
from matrixd.handlers.rooms.aliases import RoomAliasHandler
from matrixd.handlers.rooms.context import EventContextHandler
from matrixd.handlers.rooms.directory import RoomDirectoryHandler
from matrixd.handlers.rooms.hierarchy import SpaceHierarchyHandler
from matrixd.handlers.rooms.members import RoomMembersHandler
from matrixd.handlers.rooms.membership_requests import MembershipRequestHandler
from matrixd.handlers.rooms.messages import PaginationHandler
from matrixd.handlers.rooms.report import ReportHandler
from matrixd.handlers.rooms.serialize import ClientEventSerializer
from matrixd.handlers.rooms.state import RoomStateHandler
from matrixd.handlers.rooms.timeline import TimelineWalker
from matrixd.handlers.rooms.upgrade import RoomUpgradeHandler
from matrixd.handlers.visibility import VisibilityFilter
from matrixd.storage.directory import PublicRoomsStore
from matrixd.storage.reports import ReportStore


@attrs.define
class RoomsArea:
    """History visibility (also used by sync), room reads, directory, upgrades, reports."""

    visibility: VisibilityFilter
    serializer: ClientEventSerializer
    access: RoomAccessChecker
    walker: TimelineWalker
    public_rooms: PublicRoomsStore
    reports_store: ReportStore
    messages: PaginationHandler
    context: EventContextHandler
    members: RoomMembersHandler
    state: RoomStateHandler
    aliases: RoomAliasHandler
    membership_requests: MembershipRequestHandler
    directory: RoomDirectoryHandler
    upgrade: RoomUpgradeHandler
    reports: ReportHandler
    hierarchy: SpaceHierarchyHandler
