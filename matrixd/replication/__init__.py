"""Replication between the master and workers: the TCP stream, its registry of streams, both ends.

Modules:
    commands      one frozen attrs class per verb (HELLO, AUTH, WELCOME, ERROR, PING, SUBSCRIBE,
                  POSITION, RDATA, USER_SYNC, CLEAR_USER_SYNC, USER_IP); ``parse_line``; ``auth_mac``
    protocol      ``LineConnection``: framing, max line size, heartbeats, bounded output (slow peers dropped)
    streams       ``ReplicationStream`` (a registry entry), ``StreamRegistry``, ``StreamPage``, row codec
    core_streams  the entries of ``events``, ``backfill``, ``current_state_deltas``, ``caches``
    caches        ``CacheRegistry`` (invalidatable caches by checked name), ``CacheInvalidator`` (master)
    dispatcher    ``StreamDispatcher``: invalidate → advance → wake, in every process; read-your-writes waits
    publisher     ``StreamPublisher`` (master): committed rows → its dispatcher and RDATA/POSITION
    server        ``ReplicationServer`` (master's listener factory), ``WorkerActivity`` (USER_SYNC/USER_IP)
    client        ``ReplicationClient`` (worker): reconnects, subscribes, applies, catches up from its database
    roles         ``build_master_replication`` / ``build_worker_replication`` for ``matrixd/app/``
    metrics       Prometheus metrics (lag, connected workers, commands, catch-ups)

The database is the truth: the stream only announces.  Positions never pass an
unfinished id; a worker that sees a gap pages the rows itself.
"""
