"""Prometheus metrics of the replication stream (master and workers alike)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

COMMANDS_SENT = Counter(
    "matrixd_replication_commands_sent_total", "Replication commands sent, by verb", ["verb"]
)
COMMANDS_RECEIVED = Counter(
    "matrixd_replication_commands_received_total", "Replication commands received, by verb", ["verb"]
)
CONNECTED_WORKERS = Gauge(
    "matrixd_replication_connected_workers", "Authenticated worker connections to this master"
)
STREAM_LAG = Gauge(
    "matrixd_replication_stream_lag",
    "Master position minus this process's applied position, per stream (0 on the master)",
    ["stream"],
)
STREAM_POSITION = Gauge(
    "matrixd_replication_stream_position", "The position this process has applied, per stream", ["stream"]
)
CATCHUPS = Counter(
    "matrixd_replication_catchups_total", "Gaps filled by paging rows from the database (or master)", ["stream"]
)
CATCHUP_ROWS = Counter(
    "matrixd_replication_catchup_rows_total", "Rows fetched while catching up", ["stream"]
)
SLOW_CONSUMER_DISCONNECTS = Counter(
    "matrixd_replication_slow_consumer_disconnects_total",
    "Connections dropped because the peer did not read fast enough",
)
HEARTBEAT_TIMEOUTS = Counter(
    "matrixd_replication_heartbeat_timeouts_total", "Connections dropped because the peer fell silent"
)
AUTH_FAILURES = Counter(
    "matrixd_replication_auth_failures_total", "Connections refused during the handshake", ["reason"]
)
RECONNECTS = Counter(
    "matrixd_replication_client_connection_attempts_total", "Worker attempts to connect to the master"
)
