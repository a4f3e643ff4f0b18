"""Prometheus metrics for the database layer.

Kept out of :mod:`matrixd.storage.database` so the Database takes a plain
callback and tests (or other metric backends) can pass their own.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TXN_DURATION = Histogram(
    "matrixd_db_txn_duration_seconds",
    "Time spent running a database transaction (on the DB thread), by description",
    ["desc"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

TXN_RETRIES = Counter(
    "matrixd_db_txn_retries_total",
    "Transactions re-run after a serialization failure, deadlock or lock timeout",
    ["desc"],
)


# Synapse's names for the same facts, so its dashboards work unchanged: per-transaction-name
# count and total seconds (counters), and how long transactions waited for a pool connection.
SYNAPSE_TXN_COUNT = Counter("synapse_storage_transaction_time_count", "Transactions run, by description", ["desc"])
SYNAPSE_TXN_SUM = Counter("synapse_storage_transaction_time_sum", "Seconds spent in transactions, by description",
                          ["desc"])
SCHEDULE_TIME = Histogram(
    "synapse_storage_schedule_time", "Seconds a transaction waited for a database connection",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def observe_txn(desc: str, duration: float, retried: bool) -> None:
    """The default metrics callback of :class:`matrixd.storage.database.Database`."""
    TXN_DURATION.labels(desc).observe(duration)
    SYNAPSE_TXN_COUNT.labels(desc).inc()
    SYNAPSE_TXN_SUM.labels(desc).inc(duration)
    if retried:
        TXN_RETRIES.labels(desc).inc()


def observe_schedule(wait: float) -> None:
    """Record how long a transaction waited between submission and starting on a pool thread."""
    SCHEDULE_TIME.observe(wait)
