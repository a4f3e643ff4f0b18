#!/usr/bin/env python3
"""Writes ``matrixd-dashboard.json`` next to this file (run it after editing the panels below).

Every query uses metrics matrixd exports (``tests/admin/test_monitoring_contrib.py``
checks each name against a running server).  Where Synapse has a metric for the
same fact the Synapse name is used, so panels copied from Synapse's dashboard work
on matrixd and the other way round.
"""

from __future__ import annotations

import json
import os
from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
W = 'worker=~"$worker"'
RATE = "[$__rate_interval]"

# (title, unit, [(expr, legend)])
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    # -- HTTP
    ("Requests per second (by process)", "reqps",
     [(f"sum by (worker) (rate(synapse_http_server_requests_received_total{{{W}}}{RATE}))", "{{worker}}")]),
    ("Requests per second (by servlet and method)", "reqps",
     [(f"topk(10, sum by (servlet, method) (rate(synapse_http_server_requests_received_total{{{W}}}{RATE})))",
       "{{method}} {{servlet}}")]),
    ("Responses per second (by status)", "reqps",
     [(f"sum by (code) (rate(synapse_http_server_responses_total{{{W}}}{RATE}))", "{{code}}")]),
    ("Response time p50 / p95 (excluding /sync long-polls)", "s",
     [(f'histogram_quantile(0.5, sum by (le, worker) (rate(synapse_http_server_response_time_seconds_bucket'
       f'{{{W}, servlet!="SyncServlet"}}{RATE})))', "p50 {{worker}}"),
      (f'histogram_quantile(0.95, sum by (le, worker) (rate(synapse_http_server_response_time_seconds_bucket'
       f'{{{W}, servlet!="SyncServlet"}}{RATE})))', "p95 {{worker}}")]),
    ("Slowest servlets (average response time)", "s",
     [(f"topk(10, sum by (servlet, method) (rate(synapse_http_server_response_time_seconds_sum{{{W}}}{RATE}))"
       f" / sum by (servlet, method) (rate(synapse_http_server_response_time_seconds_count{{{W}}}{RATE})))",
       "{{method}} {{servlet}}")]),
    ("Requests in flight", "short",
     [(f"sum by (servlet, method) (synapse_http_server_in_flight_requests_count{{{W}}}) > 0",
       "{{method}} {{servlet}}")]),
    # -- database
    ("Database transactions per second (top 10 by name)", "ops",
     [(f"topk(10, sum by (desc) (rate(synapse_storage_transaction_time_count_total{{{W}}}{RATE})))", "{{desc}}")]),
    ("Database time (share of wall clock, top 10 by name)", "percentunit",
     [(f"topk(10, sum by (desc) (rate(synapse_storage_transaction_time_sum_total{{{W}}}{RATE})))", "{{desc}}")]),
    ("Database pool wait p50 / p95", "s",
     [(f"histogram_quantile(0.5, sum by (le, worker) (rate(synapse_storage_schedule_time_bucket{{{W}}}{RATE})))",
       "p50 {{worker}}"),
      (f"histogram_quantile(0.95, sum by (le, worker) (rate(synapse_storage_schedule_time_bucket{{{W}}}{RATE})))",
       "p95 {{worker}}")]),
    ("Slowest database transactions (p95)", "s",
     [(f"topk(5, histogram_quantile(0.95, sum by (le, desc) (rate(matrixd_db_txn_duration_seconds_bucket"
       f"{{{W}}}{RATE}))))", "{{desc}}")]),
    # -- events, state, sync
    ("Events persisted per second (by type)", "ops",
     [(f"sum by (type) (rate(synapse_storage_events_persisted_events_sep_total{{{W}}}{RATE}))", "{{type}}")]),
    ("Events persisted per second (by origin)", "ops",
     [(f"topk(10, sum by (origin_type, origin_entity) (rate(synapse_storage_events_persisted_events_sep_total"
       f"{{{W}}}{RATE})))", "{{origin_type}} {{origin_entity}}")]),
    ("Current state size", "short",
     [('max(matrixd_current_state_events{job="matrixd-main"})', "state events"),
      ('max(matrixd_current_state_rooms{job="matrixd-main"})', "rooms")]),
    ("Sync requests and wake-ups per second", "ops",
     [(f"sum by (kind) (rate(matrixd_sync_requests_total{{{W}}}{RATE}))", "requests {{kind}}"),
      (f"sum(rate(matrixd_sync_wakeups_total{{{W}}}{RATE}))", "wake-ups"),
      (f"sum by (type) (rate(synapse_handlers_sync_nonempty_total{{{W}}}{RATE}))", "non-empty {{type}}")]),
    ("Waiting requests and wake-ups by stream", "short",
     [(f"sum by (worker) (synapse_notifier_listeners{{{W}}})", "waiting {{worker}}"),
      (f"sum by (stream) (rate(synapse_notifier_users_woken_by_stream_total{{{W}}}{RATE}))", "woken {{stream}}")]),
    # -- federation
    ("Federation send queue", "short",
     [("sum(synapse_federation_transaction_queue_pending_pdus)", "pending PDUs"),
      ("sum(synapse_federation_transaction_queue_pending_edus)", "pending EDUs"),
      ("topk(5, matrixd_federation_sender_queue_depth)", "{{destination}}")]),
    ("Federation retries per destination", "ops",
     [(f"topk(10, rate(matrixd_federation_sender_retries_total{RATE}))", "{{destination}}")]),
    # -- caches
    ("Cache hit ratio", "percentunit",
     [(f"sum by (name) (rate(synapse_util_caches_cache_hits{{{W}}}{RATE}))"
       f" / sum by (name) (rate(synapse_util_caches_cache{{{W}}}{RATE}))", "{{name}}")]),
    ("Cache size", "short",
     [(f"sum by (name) (synapse_util_caches_cache_size{{{W}}})", "{{name}}")]),
    # -- replication
    ("Replication lag (master position minus worker position)", "short",
     [(f"max by (worker, stream) (matrixd_replication_stream_lag{{{W}}})", "{{worker}} {{stream}}")]),
    ("Workers connected to the master / catch-ups", "short",
     [("max(matrixd_replication_connected_workers)", "connected workers"),
      (f"sum by (worker) (increase(matrixd_replication_catchups_total{{{W}}}{RATE}))", "catch-ups {{worker}}")]),
    # -- process
    ("Reactor tick time p50 / p99", "s",
     [(f"histogram_quantile(0.5, sum by (le, worker) (rate(python_twisted_reactor_tick_time_bucket{{{W}}}{RATE})))",
       "p50 {{worker}}"),
      (f"histogram_quantile(0.99, sum by (le, worker) (rate(python_twisted_reactor_tick_time_bucket{{{W}}}{RATE})))",
       "p99 {{worker}}")]),
    ("GC time per second (by generation)", "s",
     [(f"sum by (worker, gen) (rate(python_gc_time_sum{{{W}}}{RATE}))", "{{worker}} gen {{gen}}"),
      (f"sum by (worker) (rate(python_gc_collections_total{{{W}}}{RATE}))", "collections/s {{worker}}")]),
    ("CPU", "percentunit",
     [(f"rate(process_cpu_seconds_total{{{W}}}{RATE})", "{{worker}}")]),
    ("Resident memory", "bytes",
     [(f"process_resident_memory_bytes{{{W}}}", "{{worker}}")]),
    ("Open file descriptors", "short",
     [(f"process_open_fds{{{W}}}", "{{worker}}"), (f"max(process_max_fds{{{W}}})", "limit")]),
]


def build() -> dict[str, Any]:
    panels = []
    for i, (title, unit, queries) in enumerate(PANELS):
        panels.append({
            "id": i + 1, "type": "timeseries", "title": title, "datasource": DS,
            "gridPos": {"x": 12 * (i % 2), "y": 8 * (i // 2), "w": 12, "h": 8},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
                        "tooltip": {"mode": "multi"}},
            "targets": [{"refId": chr(ord("A") + j), "datasource": DS, "expr": expr, "legendFormat": legend}
                        for j, (expr, legend) in enumerate(queries)],
        })
    worker_query = 'label_values(process_start_time_seconds{job=~"matrixd-.*"}, worker)'
    return {
        "title": "matrixd", "uid": "matrixd-overview",
        "description": ("Requests, database, events, sync, federation, caches, replication and process health of"
                        " every matrixd process (contrib/prometheus labels each target with `worker`)."),
        "schemaVersion": 38, "version": 2, "editable": True, "time": {"from": "now-3h", "to": "now"},
        "refresh": "30s", "tags": ["matrixd", "matrix"],
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            {"name": "worker", "type": "query", "datasource": DS, "label": "Process",
             "query": {"query": worker_query, "refId": "W"}, "definition": worker_query,
             "includeAll": True, "multi": True, "allValue": ".*", "current": {"text": "All", "value": "$__all"},
             "refresh": 2},
        ]},
        "panels": panels,
    }


if __name__ == "__main__":
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "matrixd-dashboard.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(build(), f, indent=1)
        f.write("\n")
    print(f"wrote {path}")
