"""Inbound invites: ``PUT /_matrix/federation/v1/invite`` and ``/v2/invite`` (logic in ``MembershipServer``)."""

from __future__ import annotations

from typing import Any, Optional

from matrixd.api.errors import BadJsonError
from matrixd.federation.acl import ServerAclChecker
from matrixd.federation.membership.serve import MembershipServer
from matrixd.federation.transport.server import BaseFederationServlet, FederationAuthenticator, JsonDict
from matrixd.http.request import MatrixRequest
from matrixd.http.server import federation_patterns


class _InviteServlet(BaseFederationServlet):
    ROOM_ID_ARG = "room_id"

    def __init__(self, authenticator: FederationAuthenticator, acl: ServerAclChecker,
                 handler: MembershipServer) -> None:
        super().__init__(authenticator, acl)
        self._handler = handler


class InviteV1Servlet(_InviteServlet):
    """v1: the body is the invite event; its ``unsigned.invite_room_state`` the stripped state."""

    PATTERNS = federation_patterns("/invite/(?P<room_id>[^/]*)/(?P<event_id>[^/]*)")

    async def on_PUT(self, origin: str, content: Optional[JsonDict], request: MatrixRequest, room_id: str,
                     event_id: str) -> tuple[int, Any]:
        assert content is not None
        unsigned = content.get("unsigned")
        state = unsigned.get("invite_room_state") if isinstance(unsigned, dict) else None
        body = await self._handler.on_invite(origin, room_id, event_id, content, None,
                                             state if isinstance(state, list) else None)
        return 200, [200, body]


class InviteV2Servlet(_InviteServlet):
    """v2: ``{event, room_version, invite_room_state}``."""

    PATTERNS = federation_patterns("/invite/(?P<room_id>[^/]*)/(?P<event_id>[^/]*)", versions=("v2",))

    async def on_PUT(self, origin: str, content: Optional[JsonDict], request: MatrixRequest, room_id: str,
                     event_id: str) -> tuple[int, Any]:
        assert content is not None
        event, version, state = content.get("event"), content.get("room_version"), content.get("invite_room_state")
        if not isinstance(event, dict) or not isinstance(version, str):
            raise BadJsonError("event and room_version are required")
        body = await self._handler.on_invite(origin, room_id, event_id, event, version,
                                             state if isinstance(state, list) else None)
        return 200, body
