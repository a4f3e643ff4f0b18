"""Reading events and room state over federation: ``/event``, ``/state``, ``/state_ids``,
``/event_auth``, ``/backfill`` and ``/get_missing_events`` (all v1).

Access rules are in ``matrixd.federation.read_handler``; every endpoint but
``/event`` names its room in the path, whose server ACL applies.
"""

from __future__ import annotations

from typing import Optional

from matrixd.api.errors import BadJsonError
from matrixd.federation.read_handler import FederationReadHandler, parse_limit
from matrixd.federation.transport.server import BaseFederationServlet, FederationAuthenticator, JsonDict
from matrixd.federation.acl import ServerAclChecker
from matrixd.http.request import MatrixRequest
from matrixd.http.responses import respond_with_bytes
from matrixd.http.server import federation_patterns
from matrixd.http.servlet import parse_integer, parse_string, parse_strings_from_args


class _ReadServlet(BaseFederationServlet):
    def __init__(self, authenticator: FederationAuthenticator, acl: ServerAclChecker,
                 handler: FederationReadHandler) -> None:
        super().__init__(authenticator, acl)
        self._handler = handler


class EventServlet(_ReadServlet):
    PATTERNS = federation_patterns("/event/(?P<event_id>[^/]*)")

    async def on_GET(self, origin: str, content: None, request: MatrixRequest, event_id: str) -> tuple[int, JsonDict]:
        return 200, await self._handler.get_event(origin, event_id)


class StateServlet(_ReadServlet):
    PATTERNS = federation_patterns("/state/(?P<room_id>[^/]*)")
    ROOM_ID_ARG = "room_id"

    async def on_GET(self, origin: str, content: None, request: MatrixRequest, room_id: str) -> None:
        event_id = parse_string(request, "event_id", required=True)
        # Thousands of events in a large room: relayed as stored rather than parsed and encoded again.
        body = await self._handler.get_state_body(origin, room_id, event_id)
        request.setHeader(b"Cache-Control", b"no-cache, no-store, must-revalidate")
        respond_with_bytes(request, 200, body, b"application/json")


class StateIdsServlet(_ReadServlet):
    PATTERNS = federation_patterns("/state_ids/(?P<room_id>[^/]*)")
    ROOM_ID_ARG = "room_id"

    async def on_GET(self, origin: str, content: None, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        event_id = parse_string(request, "event_id", required=True)
        return 200, await self._handler.get_state_ids(origin, room_id, event_id)


class EventAuthServlet(_ReadServlet):
    PATTERNS = federation_patterns("/event_auth/(?P<room_id>[^/]*)/(?P<event_id>[^/]*)")
    ROOM_ID_ARG = "room_id"

    async def on_GET(
        self, origin: str, content: None, request: MatrixRequest, room_id: str, event_id: str
    ) -> tuple[int, JsonDict]:
        return 200, await self._handler.get_event_auth(origin, room_id, event_id)


class BackfillServlet(_ReadServlet):
    PATTERNS = federation_patterns("/backfill/(?P<room_id>[^/]*)")
    ROOM_ID_ARG = "room_id"

    async def on_GET(self, origin: str, content: None, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        event_ids = parse_strings_from_args(request.args or {}, "v", required=True)
        limit = parse_integer(request, "limit", required=True)
        return 200, await self._handler.backfill(origin, room_id, event_ids, limit)


class GetMissingEventsServlet(_ReadServlet):
    PATTERNS = federation_patterns("/get_missing_events/(?P<room_id>[^/]*)")
    ROOM_ID_ARG = "room_id"

    async def on_POST(
        self, origin: str, content: Optional[JsonDict], request: MatrixRequest, room_id: str
    ) -> tuple[int, JsonDict]:
        assert content is not None
        earliest = _string_list(content, "earliest_events")
        latest = _string_list(content, "latest_events")
        limit = parse_limit(content.get("limit", 10))
        min_depth = parse_limit(content.get("min_depth", 0), "min_depth")
        return 200, await self._handler.get_missing_events(origin, room_id, earliest, latest, limit, min_depth)


def _string_list(content: JsonDict, name: str) -> list[str]:
    value = content.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadJsonError(f"'{name}' must be a list of event ids")
    return value
