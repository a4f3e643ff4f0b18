"""Reporting content to the server's administrators (the reporting content module).

* an event: the reporter must be joined to its room now (spec v1.8) and able
  to see the event; otherwise, or if it is unknown or redacted, 404;
* a room: no membership needed (spec v1.13), only that the room is known;
* a user: no shared room needed (spec v1.14), only that the user exists
  here, or is remote (we cannot tell, so it is accepted).
"""

from __future__ import annotations

import logging
from typing import Optional

from matrixd.api.errors import Codes, MatrixError, NotFoundError
from matrixd.handlers.visibility import VisibilityFilter
from matrixd.storage.accounts import UserStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.reports import ReportStore
from matrixd.storage.rooms import RoomStore
from matrixd.types import Requester, UserID, get_domain_from_id

logger = logging.getLogger(__name__)

MAX_REASON_LENGTH = 1000


def check_reason(reason: object, *, required: bool) -> Optional[str]:
    if reason is None:
        if required:
            raise MatrixError(400, "Missing reason", Codes.MISSING_PARAM)
        return None
    if not isinstance(reason, str):
        raise MatrixError(400, "reason must be a string", Codes.BAD_JSON)
    if len(reason) > MAX_REASON_LENGTH:
        raise MatrixError(400, f"reason must be at most {MAX_REASON_LENGTH} characters", Codes.INVALID_PARAM)
    return reason


class ReportHandler:
    def __init__(
        self,
        *,
        server_name: str,
        reports: ReportStore,
        rooms: RoomStore,
        events: EventStore,
        current_state: CurrentStateStore,
        users: UserStore,
        visibility: VisibilityFilter,
    ) -> None:
        self._server_name = server_name
        self._reports = reports
        self._rooms = rooms
        self._events = events
        self._current = current_state
        self._users = users
        self._visibility = visibility

    async def report_event(
        self, requester: Requester, room_id: str, event_id: str, reason: Optional[str], score: Optional[int]
    ) -> int:
        """Store a report of an event the requester can see in a room they are joined to."""
        not_found = NotFoundError("Unable to report event: it does not exist or you aren't able to see it.")
        membership = await self._current.get_membership(room_id, requester.user_id)
        if membership is None or membership.membership != "join":
            raise not_found
        event = await self._events.get_event(event_id)
        if event is None or event.room_id != room_id or "redacted_by" in event.unsigned:
            raise not_found
        if not await self._visibility.filter_events_for_client(requester.user_id, [event]):
            raise not_found
        report_id = await self._reports.add_report(
            requester.user_id, room_id=room_id, event_id=event_id, target_user_id=event.sender, reason=reason,
            score=score,
        )
        logger.info("report %d: %s reported event %s in %s", report_id, requester.user_id, event_id, room_id)
        return report_id

    async def report_room(self, requester: Requester, room_id: str, reason: str) -> int:
        """Store a report of a room this server knows."""
        if await self._rooms.get_room(room_id) is None:
            raise NotFoundError("Room not found")
        report_id = await self._reports.add_report(requester.user_id, room_id=room_id, reason=reason)
        logger.info("report %d: %s reported room %s", report_id, requester.user_id, room_id)
        return report_id

    async def report_user(self, requester: Requester, user_id: str, reason: str) -> int:
        """Store a report of a user (local users must exist)."""
        if not UserID.is_valid(user_id):
            raise MatrixError(400, f"Invalid user id {user_id!r}", Codes.INVALID_PARAM)
        if get_domain_from_id(user_id) == self._server_name and await self._users.get_user(user_id) is None:
            raise NotFoundError("User not found")
        report_id = await self._reports.add_report(requester.user_id, target_user_id=user_id, reason=reason)
        logger.info("report %d: %s reported user %s", report_id, requester.user_id, user_id)
        return report_id
