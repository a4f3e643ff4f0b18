"""Prometheus metrics: the registry every matrixd metric lives in, and helpers.

All metrics register with ``REGISTRY``, which is prometheus_client's default
registry: it already carries the process collector (RSS, CPU seconds, open file
descriptors, start time), the platform collector (Python version) and the GC
collector, so a scrape of any matrixd process reports those without extra code.
Metric names start with ``matrixd_``, or ``synapse_`` where Synapse exports the
same fact; those carry Synapse's ``server_name`` label too, added when the
registry is rendered (one homeserver per process, so it is one value; process
and Python runtime metrics have none, as in Synapse).  Serve them with
``matrixd.metrics.resource.MetricsResource``.
"""

from __future__ import annotations

from typing import Iterable, Optional

from prometheus_client import REGISTRY as _DEFAULT_REGISTRY
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric

REGISTRY: CollectorRegistry = _DEFAULT_REGISTRY

# Buckets for request latencies: fine at the fast end, up to long-poll lengths.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)

__all__ = ["REGISTRY", "LATENCY_BUCKETS", "CONTENT_TYPE_LATEST", "SERVER_NAME_LABEL", "render_metrics"]

#: Synapse's label naming the homeserver on its (non-process) metrics.
SERVER_NAME_LABEL = "server_name"
_SYNAPSE_PREFIX = "synapse_"


class _ServerNameLabelled:
    """A collector re-yielding ``registry``'s families, ``synapse_*`` ones with ``server_name`` added."""

    def __init__(self, registry: CollectorRegistry, server_name: str) -> None:
        self._registry = registry
        self._server_name = server_name

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            if not family.name.startswith(_SYNAPSE_PREFIX):
                yield family
                continue
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                s if SERVER_NAME_LABEL in s.labels
                else s._replace(labels={**s.labels, SERVER_NAME_LABEL: self._server_name})
                for s in family.samples
            ]
            yield labelled


def render_metrics(registry: CollectorRegistry = REGISTRY, server_name: Optional[str] = None) -> bytes:
    """The Prometheus text exposition of every metric in ``registry``.

    With ``server_name``, ``synapse_*`` metrics carry it as Synapse's ``server_name`` label.
    """
    if server_name is None:
        return generate_latest(registry)
    view = CollectorRegistry(auto_describe=False)
    view.register(_ServerNameLabelled(registry, server_name))
    return generate_latest(view)
