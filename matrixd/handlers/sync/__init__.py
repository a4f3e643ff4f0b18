"""``/sync``: filters, the per-room timeline and state computation, and long-polling.

Import from the modules (``handler``, ``filters``, ``types``...): this package
also holds :mod:`announcer`, which the stream writers (receipts, account data,
presence) import, so it must not pull in the sync handler itself.
"""
