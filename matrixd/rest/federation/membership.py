"""Membership handshakes: ``make_join``/``send_join`` (v1, v2), ``make_leave``/``send_leave`` (v1, v2),
``make_knock``/``send_knock`` (v1).  Logic in ``matrixd.federation.membership.serve``.
"""

from __future__ import annotations

from typing import Any, Optional

from matrixd.federation.acl import ServerAclChecker
from matrixd.federation.membership.serve import JOIN, KNOCK, LEAVE, MembershipServer
from matrixd.federation.transport.server import BaseFederationServlet, FederationAuthenticator, JsonDict
from matrixd.http.request import MatrixRequest
from matrixd.http.server import federation_patterns
from matrixd.http.servlet import parse_boolean, parse_strings_from_args


class _MembershipServlet(BaseFederationServlet):
    ROOM_ID_ARG = "room_id"

    def __init__(self, authenticator: FederationAuthenticator, acl: ServerAclChecker,
                 handler: MembershipServer) -> None:
        super().__init__(authenticator, acl)
        self._handler = handler


class _MakeServlet(_MembershipServlet):
    MEMBERSHIP = JOIN

    async def on_GET(self, origin: str, content: None, request: MatrixRequest, room_id: str,
                     user_id: str) -> tuple[int, JsonDict]:
        versions = parse_strings_from_args(request.args or {}, "ver") or ["1"]
        return 200, await self._handler.make_membership(origin, room_id, user_id, self.MEMBERSHIP, versions)


class MakeJoinServlet(_MakeServlet):
    PATTERNS = federation_patterns("/make_join/(?P<room_id>[^/]*)/(?P<user_id>[^/]*)")
    MEMBERSHIP = JOIN


class MakeLeaveServlet(_MakeServlet):
    PATTERNS = federation_patterns("/make_leave/(?P<room_id>[^/]*)/(?P<user_id>[^/]*)")
    MEMBERSHIP = LEAVE


class MakeKnockServlet(_MakeServlet):
    PATTERNS = federation_patterns("/make_knock/(?P<room_id>[^/]*)/(?P<user_id>[^/]*)")
    MEMBERSHIP = KNOCK


class _SendServlet(_MembershipServlet):
    MEMBERSHIP = JOIN
    #: v1 answers wrap the body as ``[200, body]``.
    V1_WRAPPED = False
    #: send_join v2 takes ``omit_members`` (a partial-state join).
    OMIT_MEMBERS_ALLOWED = False

    async def on_PUT(self, origin: str, content: Optional[JsonDict], request: MatrixRequest, room_id: str,
                     event_id: str) -> tuple[int, Any]:
        assert content is not None
        omit = self.OMIT_MEMBERS_ALLOWED and bool(parse_boolean(request, "omit_members", False))
        body = await self._handler.send_membership(origin, room_id, event_id, content, self.MEMBERSHIP,
                                                   omit_members=omit)
        return 200, ([200, body] if self.V1_WRAPPED else body)


class SendJoinV1Servlet(_SendServlet):
    PATTERNS = federation_patterns("/send_join/(?P<room_id>[^/]*)/(?P<event_id>[^/]*)")
    MEMBERSHIP = JOIN
    V1_WRAPPED = True


class SendJoinV2Servlet(_SendServlet):
    PATTERNS = federation_patterns("/send_join/(?P<room_id>[^/]*)/(?P<event_id>[^/]*)", versions=("v2",))
    MEMBERSHIP = JOIN
    OMIT_MEMBERS_ALLOWED = True


class SendLeaveV1Servlet(_SendServlet):
    PATTERNS = federation_patterns("/send_leave/(?P<room_id>[^/]*)/(?P<event_id>[^/]*)")
    MEMBERSHIP = LEAVE
    V1_WRAPPED = True


class SendLeaveV2Servlet(_SendServlet):
    PATTERNS = federation_patterns("/send_leave/(?P<room_id>[^/]*)/(?P<event_id>[^/]*)", versions=("v2",))
    MEMBERSHIP = LEAVE


class SendKnockServlet(_SendServlet):
    PATTERNS = federation_patterns("/send_knock/(?P<room_id>[^/]*)/(?P<event_id>[^/]*)")
    MEMBERSHIP = KNOCK
