"""Serving the Prometheus text exposition: a plain resource and a servlet.

prometheus_client ships a Twisted resource, but it imports the global reactor and
renders in a thread pool; rendering the registry is quick enough to do inline.
``MetricsResource`` is the root of a ``type: metrics`` listener (any path);
``MetricsServlet`` serves ``/_matrixd/metrics`` on an http listener that lists the
``metrics`` resource.
"""

from __future__ import annotations

from typing import Optional

from prometheus_client import CollectorRegistry
from twisted.web.resource import Resource
from twisted.web.server import Request

from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, prefixed_patterns, respond_with_bytes
from matrixd.metrics import CONTENT_TYPE_LATEST, REGISTRY, render_metrics

_CONTENT_TYPE = CONTENT_TYPE_LATEST.encode("ascii")


class MetricsResource(Resource):
    """Answers every GET below it with the metrics of ``registry`` (``server_name``: see ``render_metrics``)."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry = REGISTRY, server_name: Optional[str] = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._registry = registry
        self._server_name = server_name

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", _CONTENT_TYPE)  # type: ignore[no-untyped-call,unused-ignore]
        return render_metrics(self._registry, self._server_name)


class MetricsServlet(RestServlet):
    """``GET /_matrixd/metrics`` inside a JsonResource (raw text, not JSON)."""

    PATTERNS = prefixed_patterns("", "/_matrixd/metrics")

    def __init__(self, registry: CollectorRegistry = REGISTRY, server_name: Optional[str] = None) -> None:
        self._registry = registry
        self._server_name = server_name

    async def on_GET(self, request: MatrixRequest) -> None:
        respond_with_bytes(request, 200, render_metrics(self._registry, self._server_name), _CONTENT_TYPE)
