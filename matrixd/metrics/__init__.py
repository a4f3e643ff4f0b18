"""Prometheus metrics: the registry every matrixd metric lives in, and helpers.

All metrics register with ``REGISTRY``, which is prometheus_client's default
registry: it already carries the process collector (RSS, CPU seconds, open file
descriptors, start time), the platform collector (Python version) and the GC
collector, so a scrape of any matrixd process reports those without extra code.
Metric names start with ``matrixd_``. Serve them with
``matrixd.metrics.resource.MetricsResource``.
"""

from __future__ import annotations

from prometheus_client import REGISTRY as _DEFAULT_REGISTRY
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY: CollectorRegistry = _DEFAULT_REGISTRY

# Buckets for request latencies: fine at the fast end, up to long-poll lengths.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)

__all__ = ["REGISTRY", "LATENCY_BUCKETS", "CONTENT_TYPE_LATEST", "render_metrics"]


def render_metrics(registry: CollectorRegistry = REGISTRY) -> bytes:
    """The Prometheus text exposition of every metric in ``registry``."""
    return generate_latest(registry)
