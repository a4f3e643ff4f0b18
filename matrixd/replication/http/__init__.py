"""The internal HTTP API between processes: writes forwarded from workers to the master.

A worker never writes what the master owns.  Where a worker-hosted endpoint
must change something (a message sent through a worker, a receipt, typing,
presence, account data, an inbound federation PDU), the worker's *remote*
implementation of the handler (chosen once at start-up, see
``matrixd.replication.http.remote``) calls the master::

    POST /_matrixd/replication/<endpoint>/<txn_id>
    Authorization: MatrixdReplication worker="sync1",ts="<ms>",mac="<hex>"
    {"...": "the endpoint's arguments"}

    200 {"result": {...}, "positions": {"events": 1234}}
    4xx {"errcode": ..., "error": ...}        (the handler's MatrixError, re-raised on the worker)

``positions`` names the replication streams the write advanced and how far;
the worker waits (bounded) for its own replica to apply them before it
answers its client, so the client reads its own write on the next request
to any process.  Requests are idempotent by ``txn_id``: the master keeps each
answer for a while and returns it again for a retry, so the worker can retry
safely after a lost connection.

The master also serves ``GET /_matrixd/replication/streams/<stream>`` so
workers can catch up on streams whose rows live only in the master's memory
(typing).

Modules: :mod:`.auth` (request MACs), :mod:`.server` (master-side servlets and
endpoint registry), :mod:`.client` (the worker's caller), :mod:`.writes`
(the write endpoints and their payloads), :mod:`.remote` (remote handlers).
"""
