"""Assembling replication for a process role from that role's stores (called from ``matrixd/app/``).

Both ends must agree on stream and cache names, so they come from the same
functions here: :func:`register_core_caches` and :func:`core_streams`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

import attrs
from twisted.internet import defer

from matrixd.replication.caches import CacheInvalidator, CacheRegistry, CachesPruner, per_key
from matrixd.replication.client import ClientSettings, Connector, ReplicationClient
from matrixd.replication.core_streams import (
    backfill_stream,
    caches_stream,
    current_state_deltas_stream,
    events_stream,
)
from matrixd.replication.dispatcher import StreamDispatcher
from matrixd.replication.protocol import ConnectionSettings
from matrixd.replication.publisher import StreamPublisher
from matrixd.replication.server import RecordLastSeen, ReplicationServer, WorkerActivity
from matrixd.replication.streams import ReplicationStream, StreamRegistry
from matrixd.storage.accounts import TokenStore, UserStore
from matrixd.storage.cache_invalidation import CacheInvalidationStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.database import Database
from matrixd.storage.events import EventStore
from matrixd.storage.state import StateGroupStore
from matrixd.storage.streams import StreamIdGenerator
from matrixd.streams.notifier import Notifier
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

# Names of the caches the core registers (the same in every process).
EVENTS_CACHE = "events"
CURRENT_STATE_CACHE = "current_state_ids"
ROOMS_FOR_USER_CACHE = "rooms_for_user"
USERS_CACHE = "users"
ACCESS_TOKENS_CACHE = "access_tokens"
#: Event ids whose state groups changed (a partial-state room resynced).
EVENT_STATE_GROUPS_CACHE = "event_to_state_groups"


def register_core_caches(
    caches: CacheRegistry,
    *,
    events: EventStore,
    current_state: CurrentStateStore,
    users: Optional[UserStore] = None,
    tokens: Optional[TokenStore] = None,
    state: Optional[StateGroupStore] = None,
) -> None:
    """Register the caches of the core stores under their replication names.

    ``events`` keys are event ids, ``current_state_ids`` room ids (state and
    member list of the room), ``rooms_for_user`` and ``users`` user ids,
    ``access_tokens`` token hashes (or everything), ``event_to_state_groups`` event ids.
    """
    caches.register(EVENTS_CACHE, events.invalidate_events)
    caches.register(CURRENT_STATE_CACHE, per_key(current_state.invalidate_room))
    caches.register(ROOMS_FOR_USER_CACHE, current_state.invalidate_users)
    if users is not None:
        caches.register(USERS_CACHE, per_key(users.invalidate_user), users.invalidate_all)
    if tokens is not None:
        caches.register(ACCESS_TOKENS_CACHE, tokens.invalidate_hashes, tokens.invalidate_all)
    if state is not None:
        caches.register(EVENT_STATE_GROUPS_CACHE, state.forget_events)


def announce_store_invalidations(
    invalidator: CacheInvalidator, *, users: Optional[UserStore] = None, tokens: Optional[TokenStore] = None
) -> None:
    """On the master: every write that makes cached users or tokens stale goes out on the caches stream.

    (A token deleted on the master must stop working on every worker at once.)
    """

    def send(cache_name: str, keys: Optional[Sequence[str]]) -> None:
        d = defer.ensureDeferred(invalidator.invalidate(cache_name, keys))
        d.addErrback(lambda f: logger.error("replication: announcing %s invalidation failed: %s",
                                            cache_name, f.getErrorMessage()))

    if users is not None:
        users.add_invalidation_listener(lambda keys: send(USERS_CACHE, keys))
    if tokens is not None:
        tokens.add_invalidation_listener(lambda keys: send(ACCESS_TOKENS_CACHE, keys))


def core_streams(
    *,
    events: EventStore,
    current_state: CurrentStateStore,
    cache_store: CacheInvalidationStore,
    caches: CacheRegistry,
    stream_ids: Optional[StreamIdGenerator] = None,
    backfill_ids: Optional[StreamIdGenerator] = None,
    cache_ids: Optional[StreamIdGenerator] = None,
) -> list[ReplicationStream[Any]]:
    """The entries of ``events``, ``backfill``, ``current_state_deltas`` and ``caches``.

    Pass the id generators only in the process that writes the streams (the master).
    """

    def token_of(gen: Optional[StreamIdGenerator]) -> Optional[Callable[[], int]]:
        return None if gen is None else gen.get_current_token

    streams: list[ReplicationStream[Any]] = [
        events_stream(events, current_state, current_token=token_of(stream_ids)),
        backfill_stream(events, current_token=token_of(backfill_ids)),
        current_state_deltas_stream(current_state, current_token=token_of(stream_ids)),
        caches_stream(cache_store, caches, current_token=token_of(cache_ids)),
    ]
    return streams


@attrs.define
class MasterReplication:
    """The master's replication components.

    ``server`` is None when no ``worker_replication_secret`` is configured
    (a monolith with no workers).  Writers call ``publisher.notify(name)``
    after each commit; cache changes go through ``invalidator``.
    """

    caches: CacheRegistry
    registry: StreamRegistry
    dispatcher: StreamDispatcher
    publisher: StreamPublisher
    invalidator: CacheInvalidator
    activity: WorkerActivity
    server: Optional[ReplicationServer]
    pruner: Optional[CachesPruner] = None

    def stop(self) -> None:
        """Stop the background work (publisher polling, caches pruning)."""
        self.publisher.stop()
        if self.pruner is not None:
            self.pruner.stop()

    def add_stream(self, stream: ReplicationStream[Any]) -> None:
        """One more stream this process writes (its entry carries ``current_token``)."""
        self.publisher.add_stream(stream)


async def build_master_replication(
    *,
    clock: Clock,
    db: Database,
    server_name: str,
    secret: Optional[str],
    notifier: Notifier,
    events: EventStore,
    current_state: CurrentStateStore,
    stream_ids: StreamIdGenerator,
    backfill_ids: StreamIdGenerator,
    users: Optional[UserStore] = None,
    tokens: Optional[TokenStore] = None,
    state: Optional[StateGroupStore] = None,
    record_last_seen: Optional[RecordLastSeen] = None,
    settings: ConnectionSettings = ConnectionSettings(),
    extra_streams: Sequence[ReplicationStream[Any]] = (),
    poll_interval: Optional[float] = 5.0,
    epoch: Optional[str] = None,
) -> MasterReplication:
    """Build the stream registry, dispatcher, publisher and (with a secret) the TCP server.

    ``extra_streams`` are further registry entries written by this process
    (each with its ``current_token``).
    """
    caches = CacheRegistry()
    register_core_caches(caches, events=events, current_state=current_state, users=users, tokens=tokens,
                         state=state)
    cache_store = CacheInvalidationStore(db, clock)
    cache_ids = await cache_store.create_id_generator()
    registry = StreamRegistry(core_streams(
        events=events, current_state=current_state, cache_store=cache_store, caches=caches,
        stream_ids=stream_ids, backfill_ids=backfill_ids, cache_ids=cache_ids,
    ))
    for stream in extra_streams:
        registry.register(stream)
    dispatcher = StreamDispatcher(registry, notifier, clock)
    publisher = StreamPublisher(registry, dispatcher, clock, max_line_bytes=settings.max_line_bytes)
    if poll_interval is not None:
        publisher.start_polling(poll_interval)
    invalidator = CacheInvalidator(cache_store, cache_ids, caches, publisher.notify)
    pruner: Optional[CachesPruner] = None
    if poll_interval is not None:
        pruner = CachesPruner(clock, cache_store, lambda: publisher.published_position("caches"))
        pruner.start()
    announce_store_invalidations(invalidator, users=users, tokens=tokens)
    activity = WorkerActivity(record_last_seen)
    server = None
    if secret:
        server = ReplicationServer(
            clock=clock, server_name=server_name, secret=secret, publisher=publisher, receiver=activity,
            settings=settings, epoch=epoch,
        )
    return MasterReplication(
        caches=caches, registry=registry, dispatcher=dispatcher, publisher=publisher, invalidator=invalidator,
        activity=activity, server=server, pruner=pruner,
    )


@attrs.define
class WorkerReplication:
    """A worker's replication components: its caches, streams, dispatcher and client."""

    caches: CacheRegistry
    registry: StreamRegistry
    dispatcher: StreamDispatcher
    client: ReplicationClient


def build_worker_replication(
    *,
    clock: Clock,
    db: Database,
    connector: Connector,
    server_name: str,
    worker_name: str,
    secret: str,
    notifier: Notifier,
    events: EventStore,
    current_state: CurrentStateStore,
    subscribe: Sequence[str],
    users: Optional[UserStore] = None,
    tokens: Optional[TokenStore] = None,
    state: Optional[StateGroupStore] = None,
    extra_streams: Sequence[ReplicationStream[Any]] = (),
    settings: ClientSettings = ClientSettings(),
) -> WorkerReplication:
    """The reader side of the core streams (plus ``extra_streams``), subscribing to ``subscribe``.

    Call ``client.start()`` to connect; ``client.ready`` fires once every
    subscribed stream is positioned.
    """
    caches = CacheRegistry()
    register_core_caches(caches, events=events, current_state=current_state, users=users, tokens=tokens,
                         state=state)
    registry = StreamRegistry(core_streams(
        events=events, current_state=current_state, cache_store=CacheInvalidationStore(db, clock), caches=caches,
    ))
    for stream in extra_streams:
        registry.register(stream)
    dispatcher = StreamDispatcher(registry, notifier, clock)
    client = ReplicationClient(
        clock=clock, connector=connector, server_name=server_name, worker_name=worker_name, secret=secret,
        dispatcher=dispatcher, streams=subscribe, settings=settings,
    )
    return WorkerReplication(caches=caches, registry=registry, dispatcher=dispatcher, client=client)
