"""The servlets of the federation event flow, for a role's wiring."""

from __future__ import annotations

from matrixd.federation.area import FederationArea
from matrixd.federation.flow_area import FederationFlowArea
from matrixd.http.server import RestServlet
from matrixd.rest.federation.invite import InviteV1Servlet, InviteV2Servlet
from matrixd.rest.federation.membership import (
    MakeJoinServlet,
    MakeKnockServlet,
    MakeLeaveServlet,
    SendJoinV1Servlet,
    SendJoinV2Servlet,
    SendKnockServlet,
    SendLeaveV1Servlet,
    SendLeaveV2Servlet,
)
from matrixd.rest.federation.send import SendTransactionServlet


def federation_flow_servlets(fed: FederationArea, flow: FederationFlowArea) -> list[RestServlet]:
    return [
        SendTransactionServlet(fed.authenticator, flow.transactions),
        *(cls(fed.authenticator, fed.acl, flow.membership_server) for cls in _MEMBERSHIP_SERVLETS),
    ]


_MEMBERSHIP_SERVLETS = (
    MakeJoinServlet, SendJoinV1Servlet, SendJoinV2Servlet, MakeLeaveServlet, SendLeaveV1Servlet,
    SendLeaveV2Servlet, MakeKnockServlet, SendKnockServlet, InviteV1Servlet, InviteV2Servlet,
)
