"""SQL only: one Database (sqlite3 or psycopg2) and small stores composed per process role.

Modules:
    database    ``Database``: pool on a thread pool, ``run_interaction`` with retries, ``Cursor``
    engines     the two engines (``name`` is "sqlite" or "postgres")
    sql         ``simple_*_txn`` builders, ``in_list_clause``, ``batch_iter``
    schema      ``prepare_database``: create / upgrade / refuse (schema/ at the repo root)
    streams     ``StreamIdGenerator``: ids allocated by the single writer, safe current token
    sequences   non-stream unique ids (state groups)
    cache       ``LruCache`` with invalidation-safe population
    models      value types in and out of the stores
    events          ``EventStore``: read events, timelines, DAG, auth chains (any process)
    events_writer   ``EventWriter``: ``persist_events`` (the event-persisting process only)
    state           ``StateGroupStore``: state groups as bounded delta chains
    current_state   ``CurrentStateStore``: current state and memberships
    rooms           ``RoomStore``: the rooms table

Stores take ``(db, clock, ...)`` and are wired once per role in ``matrixd/app/``.
"""
