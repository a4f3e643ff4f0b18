"""The servlets of the federation event flow, for a role's wiring."""

from __future__ import annotations

from matrixd.federation.area import FederationArea
from matrixd.federation.flow_area import FederationFlowArea
from matrixd.http.server import RestServlet
from matrixd.rest.federation.send import SendTransactionServlet


def federation_flow_servlets(fed: FederationArea, flow: FederationFlowArea) -> list[RestServlet]:
    return [
        SendTransactionServlet(fed.authenticator, flow.transactions),
    ]
