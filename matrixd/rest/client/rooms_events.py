"""Sending into rooms and reading their state: ``/send``, ``/state``, ``/redact``."""

from __future__ import annotations

from typing import Optional

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.rooms.send import EventSendHandler
from matrixd.handlers.rooms.state import RoomStateHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_integer, parse_json_object_from_request, parse_string
from matrixd.types import JsonDict, Requester

REDACTION = "m.room.redaction"


def _massaged_ts(request: MatrixRequest, requester: Requester) -> Optional[int]:
    """Application services may set ``origin_server_ts`` with ``?ts=`` (spec: timestamp massaging)."""
    if requester.app_service_id is None:
        return None
    return parse_integer(request, "ts")


class RoomSendServlet(RestServlet):
    """``PUT /rooms/{roomId}/send/{eventType}/{txnId}``: idempotent per device and transaction id."""

    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]*)/send/(?P<event_type>[^/]+)/(?P<txn_id>[^/]+)")

    def __init__(self, auth: Auth, send: EventSendHandler) -> None:
        self._auth = auth
        self._send = send

    async def on_PUT(self, request: MatrixRequest, room_id: str, event_type: str, txn_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        content = parse_json_object_from_request(request)
        redacts: Optional[str] = None
        if event_type == REDACTION:
            target = content.get("redacts")
            if not isinstance(target, str):
                raise MatrixError(400, "m.room.redaction content needs 'redacts' (an event id)", Codes.BAD_JSON)
            redacts = target
        event_id = await self._send.send_event(
            requester, room_id, event_type, content, txn_id=txn_id, redacts=redacts,
            origin_server_ts=_massaged_ts(request, requester),
        )
        return 200, {"event_id": event_id}


class RoomRedactServlet(RestServlet):
    """``PUT /rooms/{roomId}/redact/{eventId}/{txnId}``."""

    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]*)/redact/(?P<event_id>[^/]*)/(?P<txn_id>[^/]+)")

    def __init__(self, auth: Auth, send: EventSendHandler) -> None:
        self._auth = auth
        self._send = send

    async def on_PUT(self, request: MatrixRequest, room_id: str, event_id: str, txn_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        content: JsonDict = {}
        reason = body.get("reason")
        if reason is not None:
            if not isinstance(reason, str):
                raise MatrixError(400, "reason must be a string", Codes.BAD_JSON)
            content["reason"] = reason
        new_id = await self._send.send_event(
            requester, room_id, REDACTION, content, txn_id=txn_id, redacts=event_id
        )
        return 200, {"event_id": new_id}


class RoomStateEventServlet(RestServlet):
    """``GET`` / ``PUT /rooms/{roomId}/state/{eventType}[/{stateKey}]`` (no or empty key: ``""``)."""

    PATTERNS = client_patterns(
        "/rooms/(?P<room_id>[^/]*)/state/(?P<event_type>[^/]+)(?:/(?P<state_key>[^/]*))?"
    )

    def __init__(self, auth: Auth, handler: RoomStateHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(
        self, request: MatrixRequest, room_id: str, event_type: str, state_key: str = ""
    ) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        fmt = parse_string(request, "format", default="content", allowed_values=("content", "event"))
        body = await self._handler.get_state_event(
            requester, room_id, event_type, state_key, as_event=fmt == "event"
        )
        return 200, body

    async def on_PUT(
        self, request: MatrixRequest, room_id: str, event_type: str, state_key: str = ""
    ) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        content = parse_json_object_from_request(request)
        event_id = await self._handler.set_state(requester, room_id, event_type, state_key, content,
                                                 origin_server_ts=_massaged_ts(request, requester))
        return 200, {"event_id": event_id}


class RoomStateServlet(RestServlet):
    """``GET /rooms/{roomId}/state``: every state event (a JSON array)."""

    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]*)/state")

    def __init__(self, auth: Auth, handler: RoomStateHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest, room_id: str) -> tuple[int, list[JsonDict]]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        return 200, await self._handler.get_state(requester, room_id)
