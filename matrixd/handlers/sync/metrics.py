"""Prometheus metrics of /sync: requests by kind, wake-ups, non-empty responses.

``synapse_handlers_sync_nonempty`` keeps Synapse's name (its dashboards chart it);
the others are matrixd's own.
"""

from __future__ import annotations

from prometheus_client import Counter

SYNC_REQUESTS = Counter("matrixd_sync_requests_total", "Sync requests, by kind (initial, incremental, full_state)",
                        ["kind"])
SYNC_WAKEUPS = Counter("matrixd_sync_wakeups_total",
                       "Waiting incremental syncs woken by new data (timeouts not counted)")
SYNC_NONEMPTY = Counter("synapse_handlers_sync_nonempty", "Sync responses that carried data, by kind", ["type"])
