"""Wiring for each process role: the master's additions for workers, and each worker kind.

``master_side``: the sync area's streams on the replication registry and the
internal write endpoints (called from ``matrixd.app.master``).
``definitions``: what each worker kind serves and subscribes to.
``worker``: building a worker's components (reads from the shared database,
remote implementations for writes) and its servlet groups.
"""
