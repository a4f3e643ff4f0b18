"""The worker kinds: what each serves, which replication streams it follows, whether it writes via the master.

One definition per ``worker_app``; the wiring in :mod:`matrixd.app.roles.worker`
builds a kind's components and servlets from it, and the example configs in
``workers/`` and the routing in ``contrib/nginx`` follow the same table:

=====================  ===================================================  =========================
kind                   serves                                               follows
=====================  ===================================================  =========================
``sync``               ``/sync``, room reads (``/messages``, ``/context``,  events, backfill,
                       ``/members``, ``/state``, ``/event``,               current_state_deltas,
                       ``/joined_rooms``...), account data / tags / push   caches, receipts, typing,
                       rules / presence / filter reads; sends, receipts,   account_data, presence,
                       read markers, typing, presence and account data     push_rules, to_device,
                       writes (and to-device acks) go to the master        device_lists
``federation_reader``  ``/_matrix/federation/*``, ``/_matrix/key/*``        events,
                       (inbound PDUs go to the master)                      current_state_deltas, caches
``media_repository``   ``/_matrix/media/*``, ``/_matrix/client/v1/media/*``, caches
                       ``/_matrix/federation/v1/media/*`` (it owns the
                       media tables and files)
``federation_sender``  nothing over HTTP: outbound federation, moved off    events,
                       the master (``federation_sender_instances``): the    current_state_deltas, caches,
                       per-destination queues, fed by its replicas          receipts, typing, presence,
                                                                            to_device, device_lists,
                                                                            federation_outbox
=====================  ===================================================  =========================

Every worker also serves ``health`` and ``metrics`` on whatever listeners name them.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

CORE_READ_STREAMS = ("events", "backfill", "current_state_deltas", "caches")
SYNC_STREAMS = ("receipts", "typing", "account_data", "presence", "push_rules", "to_device", "device_lists")


@attrs.frozen(slots=True)
class WorkerKind:
    """One ``worker_app``.

    Attributes:
        name: the ``worker_app`` value.
        streams: the replication streams it subscribes to.
        resources: the http resource names it can serve (others on its listeners serve nothing).
        needs_master_http: it calls the master's internal HTTP API (writes, in-memory stream
            catch-up), so it needs ``instance_map.main``.
    """

    name: str
    streams: tuple[str, ...]
    resources: frozenset[str]
    needs_master_http: bool


SYNC = WorkerKind("sync", CORE_READ_STREAMS + SYNC_STREAMS, frozenset({"client"}), True)
FEDERATION_READER = WorkerKind(
    "federation_reader", ("events", "current_state_deltas", "caches"), frozenset({"federation", "keys"}), True
)
MEDIA_REPOSITORY = WorkerKind("media_repository", ("caches",), frozenset({"media", "client", "federation"}), False)
FEDERATION_SENDER = WorkerKind(
    "federation_sender", ("events", "current_state_deltas", "caches", "receipts", "typing", "presence", "to_device",
                          "device_lists", "federation_outbox"),
    frozenset(), True,
)

WORKER_KINDS: Mapping[str, WorkerKind] = {k.name: k for k in (SYNC, FEDERATION_READER, MEDIA_REPOSITORY,
                                                              FEDERATION_SENDER)}
