"""``/_synapse/admin`` misc: server version, background updates, event reports,
federation destinations, server notices."""

from __future__ import annotations

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.admin.misc import AdminMiscHandler
from matrixd.handlers.admin.notices import ServerNoticesHandler
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet
from matrixd.http.servlet import parse_integer, parse_json_object_from_request, parse_string
from matrixd.rest.admin import AdminAuth, admin_patterns, parse_offset
from matrixd.types import JsonDict


class _MiscServlet(RestServlet):
    def __init__(self, auth: AdminAuth, handler: AdminMiscHandler) -> None:
        self._auth = auth
        self._handler = handler


class ServerVersionServlet(_MiscServlet):
    PATTERNS = admin_patterns("/server_version")

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, self._handler.server_version()


class BackgroundUpdatesStatusServlet(_MiscServlet):
    """The schema has no background updates (pre-release, full schema files only): nothing is running."""

    PATTERNS = admin_patterns("/background_updates/status")

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, {"enabled": True, "current_updates": {}}


class EventReportsServlet(_MiscServlet):
    PATTERNS = admin_patterns("/event_reports")

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.list_reports(
            start=parse_offset(request), limit=parse_integer(request, "limit", 100, max_value=1000),
            direction=parse_string(request, "dir", "b", allowed_values=("f", "b")),
            user_id=parse_string(request, "user_id"), room_id=parse_string(request, "room_id"))


def _report_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise MatrixError(400, "The report id must be a non-negative integer", Codes.INVALID_PARAM)
    return int(raw)


class EventReportServlet(_MiscServlet):
    PATTERNS = admin_patterns("/event_reports/(?P<report_id>[^/]*)")

    async def on_GET(self, request: MatrixRequest, report_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.get_report(_report_id(report_id))

    async def on_DELETE(self, request: MatrixRequest, report_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        await self._handler.delete_report(_report_id(report_id))
        return 200, {}


class DestinationsServlet(_MiscServlet):
    PATTERNS = admin_patterns("/federation/destinations")

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.list_destinations(
            start=parse_offset(request), limit=parse_integer(request, "limit", 100, min_value=0, max_value=1000),
            order_by=parse_string(request, "order_by", "destination"),
            direction=parse_string(request, "dir", "f", allowed_values=("f", "b")),
            search=parse_string(request, "destination"))


class DestinationServlet(_MiscServlet):
    PATTERNS = admin_patterns("/federation/destinations/(?P<destination>[^/]*)")

    async def on_GET(self, request: MatrixRequest, destination: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.get_destination(destination)


class DestinationRoomsServlet(_MiscServlet):
    PATTERNS = admin_patterns("/federation/destinations/(?P<destination>[^/]*)/rooms")

    async def on_GET(self, request: MatrixRequest, destination: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.destination_rooms(
            destination, start=parse_offset(request),
            limit=parse_integer(request, "limit", 100, min_value=0, max_value=1000),
            direction=parse_string(request, "dir", "f", allowed_values=("f", "b")))


class ResetConnectionServlet(_MiscServlet):
    PATTERNS = admin_patterns("/federation/destinations/(?P<destination>[^/]*)/reset_connection")

    async def on_POST(self, request: MatrixRequest, destination: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        await self._handler.reset_connection(destination)
        return 200, {}


def misc_admin_servlets(auth: AdminAuth, handler: AdminMiscHandler) -> list[RestServlet]:
    return [cls(auth, handler) for cls in (
        ServerVersionServlet, BackgroundUpdatesStatusServlet, EventReportsServlet, EventReportServlet,
        DestinationsServlet, DestinationServlet, DestinationRoomsServlet, ResetConnectionServlet,
    )]


class SendServerNoticeServlet(RestServlet):
    PATTERNS = admin_patterns("/send_server_notice")

    def __init__(self, auth: AdminAuth, notices: ServerNoticesHandler) -> None:
        self._auth = auth
        self._notices = notices

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        body = parse_json_object_from_request(request)
        user_id, content = body.get("user_id"), body.get("content")
        event_type, state_key = body.get("type", "m.room.message"), body.get("state_key")
        if not isinstance(user_id, str):
            raise MatrixError(400, "'user_id' must be a string", Codes.MISSING_PARAM if user_id is None else
                              Codes.BAD_JSON)
        if not isinstance(content, dict):
            raise MatrixError(400, "'content' must be an object", Codes.MISSING_PARAM if content is None else
                              Codes.BAD_JSON)
        if not isinstance(event_type, str) or (state_key is not None and not isinstance(state_key, str)):
            raise MatrixError(400, "'type' and 'state_key' must be strings", Codes.BAD_JSON)
        return 200, {"event_id": await self._notices.send_notice(user_id, content, event_type, state_key)}
