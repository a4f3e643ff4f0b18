"""Building a worker: the master's read-side builders, remote writers, and the kind's servlets.

A worker reads the shared database with the same stores the master uses
(their caches kept right by the ``caches`` stream and by stream rows) and
follows the replication streams its kind needs
(:mod:`matrixd.app.roles.definitions`).  Every write it accepts goes to the
master through the internal HTTP API: the remote handlers of
:mod:`matrixd.replication.http.remote` are chosen here, once, and the
servlets and the sync handler use them without knowing.

Of the client API, a worker registers every servlet's ``GET`` and only the
write methods whose handler is remote here (:data:`SYNC_WRITES`); everything
else answers 405, so a misrouted write is refused rather than done twice.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import attrs
from signedjson.types import SigningKey
from twisted.internet import defer

from matrixd.api.errors import ConfigError
from matrixd.app.core import RoomCore, build_room_core
from matrixd.handlers.rooms.members import polling_full_state_waiter
from matrixd.push.counts import UnreadCounter
from matrixd.storage.event_push_actions import EventPushActionsStore
from matrixd.app.master import (
    AccountStores,
    SyncArea,
    build_federation_servlets,
    build_rooms_area,
    build_sync_area_servlets,
)
from matrixd.app.roles.definitions import WORKER_KINDS, WorkerKind
from matrixd.app.roles.servlets import select_methods
from matrixd.appservice.auth import AppServiceTokenAuth
from matrixd.config import RootConfig
from matrixd.config.workers import MAIN_INSTANCE
from matrixd.events.room_versions import get_room_version
from matrixd.federation.area import FederationArea, build_federation_area
from matrixd.handlers.auth import AccessTokenAuth
from matrixd.handlers.e2e.device_lists import DeviceListChanges
from matrixd.handlers.e2e.sync_source import E2ESyncSource
from matrixd.handlers.push_rules import PushRulesHandler
from matrixd.handlers.rooms.area import RoomsArea
from matrixd.handlers.sync.filters import FilterHandler
from matrixd.handlers.sync.handler import SyncHandler, SyncStores
from matrixd.handlers.typing import TypingHandler
from matrixd.http.server import RestServlet
from matrixd.media.area import MediaArea, build_media_area
from matrixd.federation.media_client import FederationMediaFetcher
from matrixd.replication.client import Connector
from matrixd.replication.http.client import InternalTransport, ReplicationHttpClient, RemoteWriter
from matrixd.replication.e2e_streams import DEVICE_LISTS, e2e_streams
from matrixd.replication.federation_streams import FEDERATION_OUTBOX, federation_outbox_stream
from matrixd.federation.sender.backoff import retry_policy_from_config
from matrixd.federation.sender.durable_edus import DeviceListOutbox, ToDeviceOutbox
from matrixd.federation.sender.ephemeral_feed import EphemeralStreamFeed
from matrixd.federation.sender.service import FederationSenderService
from matrixd.storage.federation_outbox import FederationOutboxStore
from matrixd.storage.federation_sender import FederationSenderStore
from matrixd.storage.partial_state import PartialStateStore
from matrixd.streams.token import StreamName
from matrixd.replication.http.remote import (
    ReplicaDeviceListUpdater,
    RemoteAccountDataHandler,
    RemoteEventSendHandler,
    RemotePresenceHandler,
    RemoteReadMarkersHandler,
    RemoteReceiptsHandler,
    RemoteToDeviceHandler,
    RemoteTransactionHandler,
    RemoteTypingHandler,
)
from matrixd.rest.federation.send import SendTransactionServlet
from matrixd.replication.roles import WorkerReplication, build_worker_replication
from matrixd.replication.streams import ReplicationStream, StreamPage, decode_row
from matrixd.replication.sync_streams import (
    PRESENCE,
    RECEIPTS,
    TYPING,
    TypingStreamRow,
    presence_stream,
    receipts_stream,
    sync_streams_for_worker,
    typing_stream_for_worker,
)
from matrixd.rest.client.account_data import AccountDataServlet, RoomAccountDataServlet
from matrixd.rest.client.capabilities import CapabilitiesServlet
from matrixd.rest.client.presence import PresenceStatusServlet
from matrixd.rest.client.read_markers import ReadMarkersServlet
from matrixd.rest.client.receipts import ReceiptServlet
from matrixd.rest.client.rooms import build_rooms_servlets
from matrixd.rest.client.rooms_events import RoomRedactServlet, RoomSendServlet
from matrixd.rest.client.tags import TagServlet
from matrixd.rest.client.typing import TypingServlet
from matrixd.rest.client.versions import VersionsServlet
from matrixd.rest.media import build_media_servlets
from matrixd.rest.federation.media import federation_media_servlets
from matrixd.storage.account_data import AccountDataStore
from matrixd.storage.accounts import DeviceStore, TokenStore, UserStore
from matrixd.storage.database import Database
from matrixd.storage.device_lists import DeviceListStore, create_device_list_id_generator
from matrixd.storage.e2e_keys import E2EKeyStore
from matrixd.storage.filters import FilterStore
from matrixd.storage.presence import PresenceStore
from matrixd.storage.push_rules import PushRulesStore
from matrixd.storage.receipts import ReceiptStore
from matrixd.storage.to_device import ToDeviceStore, create_to_device_id_generator
from matrixd.util.clock import Clock

#: The client-API writes a sync worker accepts (each backed by a remote handler).
SYNC_WRITES: dict[type[RestServlet], tuple[str, ...]] = {
    RoomSendServlet: ("PUT",),
    RoomRedactServlet: ("PUT",),
    TypingServlet: ("PUT",),
    ReceiptServlet: ("POST",),
    ReadMarkersServlet: ("POST",),
    PresenceStatusServlet: ("PUT",),
    AccountDataServlet: ("PUT",),
    RoomAccountDataServlet: ("PUT",),
    TagServlet: ("PUT", "DELETE"),
}


class ReplicationActivity:
    """The ``ActivityRecorder`` of a worker: device last-seen goes to the master as batched ``USER_IP``."""

    def __init__(self, record_user_ip: Callable[[str, Optional[str], str, str], None]) -> None:
        self._record = record_user_ip

    def record(self, user_id: str, device_id: str, ip: Optional[str], user_agent: Optional[str]) -> None:
        self._record(user_id, device_id, ip or "", user_agent or "")


@attrs.define
class WorkerComponents:
    """Everything one worker process runs (the parts its kind does not need are None)."""

    config: RootConfig
    kind: WorkerKind
    clock: Clock
    db: Database
    core: RoomCore
    accounts: AccountStores
    auth: AccessTokenAuth
    replication: WorkerReplication
    http: Optional[ReplicationHttpClient]
    rooms: Optional[RoomsArea] = None
    sync: Optional[SyncArea] = None
    media: Optional[MediaArea] = None
    federation: Optional[FederationArea] = None
    #: Sends through the master (sync workers).
    send: Optional[RemoteEventSendHandler] = None
    #: Outbound federation (federation_sender workers): started once replication is positioned.
    sender: Optional["WorkerFederationSender"] = None
    #: Inbound /send, processed by the master (federation readers).
    transactions: Optional[RemoteTransactionHandler] = None


@attrs.define
class WorkerFederationSender:
    """The outbound sender of a ``federation_sender`` worker, fed by its replicas."""

    service: FederationSenderService
    feed: EphemeralStreamFeed

    async def start(self) -> None:
        await self.service.start()
        self.feed.start()

    def stop(self) -> None:
        self.feed.stop()
        self.service.stop()


def worker_kind(config: RootConfig) -> WorkerKind:
    """The :class:`WorkerKind` of a worker config.

    Raises:
        ConfigError: not a worker config, or the kind calls the master but ``instance_map.main`` is missing.
    """
    app = config.workers.worker_app
    if app is None:
        raise ConfigError("worker_app", "is required to run a worker")
    kind = WORKER_KINDS[app]
    if kind.needs_master_http and config.workers.main_instance() is None:
        raise ConfigError("instance_map", f"needs '{MAIN_INSTANCE}' (the master's replication http listener) "
                                          f"for a {app} worker, which calls the master's internal API")
    return kind


async def build_worker_components(
    config: RootConfig,
    reactor: Any,
    clock: Clock,
    db: Database,
    signing_key: SigningKey,
    *,
    connector: Connector,
    transport: Optional[InternalTransport],
) -> WorkerComponents:
    """Wire a worker of ``config``'s kind on a ready database (nothing connects until ``client.start()``).

    ``connector`` opens the TCP replication connection; ``transport`` carries
    internal HTTP requests to the master (required when the kind writes via the master).
    """
    kind = worker_kind(config)
    w = config.workers
    assert w.worker_name is not None and w.worker_replication_secret is not None
    rc = config.ratelimiting.message
    core = await build_room_core(
        clock=clock, db=db, server_name=config.server.server_name, signing_key=signing_key,
        default_room_version=get_room_version(config.server.default_room_version),
        rc_message={"per_second": rc.per_second, "burst_count": rc.burst_count},
        writes_events=False,  # the master writes; replication invalidates what this worker caches
    )
    tokens = TokenStore(db, clock)
    accounts = AccountStores(UserStore(db, clock), DeviceStore(db, clock, tokens=tokens), tokens)

    http: Optional[ReplicationHttpClient] = None
    main = w.main_instance()
    if main is not None and transport is not None:
        http = ReplicationHttpClient(clock=clock, transport=transport, master=main, worker_name=w.worker_name,
                                     secret=w.worker_replication_secret)
    if kind.needs_master_http and http is None:
        raise ConfigError("instance_map", f"a {kind.name} worker needs the master's internal HTTP API")

    # The replication client is built after the handlers whose replicas its streams feed,
    # while the remote writers wait on its positions: bind it late.
    late: list[WorkerReplication] = []

    def wait_for_position(stream: str, position: int, timeout: float) -> "defer.Deferred[bool]":
        return late[0].client.wait_for_stream_position(stream, position, timeout)

    def set_user_syncing(user_id: str, syncing: bool) -> None:
        late[0].client.set_user_syncing(user_id, syncing)

    writer = RemoteWriter(http, wait_for_position, kind.streams) if http is not None else None

    extra_streams: list[ReplicationStream[Any]] = []
    rooms: Optional[RoomsArea] = None
    sync: Optional[SyncArea] = None
    send: Optional[RemoteEventSendHandler] = None
    transactions: Optional[RemoteTransactionHandler] = None
    if kind.name == "sync":
        assert writer is not None and http is not None
        rooms = build_rooms_area(config, clock, db, core, accounts.users)
        # Member lists of partial-state rooms wait for the master's resync.
        waiter = polling_full_state_waiter(core.stores.partial_state, clock)
        rooms.members.set_full_state_waiter(waiter)
        rooms.state.set_full_state_waiter(waiter)
        sync, typing_fetch = await _build_sync_area(config, clock, db, core, rooms, accounts.devices, writer, http,
                                                    set_user_syncing)
        extra_streams = sync_streams_for_worker(
            receipts=sync.stores.receipts, account_data=sync.stores.account_data, presence=sync.stores.presence,
            push_rules=sync.stores.push_rules, current_state=core.stores.current_state, typing=sync.typing,
            fetch_typing=typing_fetch,
        ) + e2e_streams(ToDeviceStore(db, clock), DeviceListStore(db, clock))
        send = RemoteEventSendHandler(writer)
    elif kind.name == "federation_reader":
        assert writer is not None
        rooms = build_rooms_area(config, clock, db, core, accounts.users)
        transactions = RemoteTransactionHandler(writer)
    elif kind.name == "federation_sender":
        # Receipts, typing, presence, to-device and device lists become EDUs to send: follow them too
        # (read-only replicas); the master's explicit requests arrive on the federation_outbox stream.
        edu_replicas = await _edu_replicas(clock, db, core, http)
        outbox = FederationOutboxStore(db, clock)

        def notify_outbox() -> None:
            if sender is not None:
                sender.service.notify_outbox()

        extra_streams = edu_replicas.streams + e2e_streams(ToDeviceStore(db, clock), DeviceListStore(db, clock)) + [
            federation_outbox_stream(outbox, clock=clock, on_rows=notify_outbox)
        ]

    replication = build_worker_replication(
        clock=clock, db=db, connector=connector, server_name=config.server.server_name, worker_name=w.worker_name,
        secret=w.worker_replication_secret, notifier=core.notifier, events=core.stores.events,
        current_state=core.stores.current_state, subscribe=kind.streams, users=accounts.users, tokens=tokens,
        state=core.stores.state,
        extra_streams=extra_streams,
    )
    late.append(replication)
    auth = AccessTokenAuth(clock, accounts.users, tokens, activity=ReplicationActivity(replication.client.record_user_ip))
    # -- application services: their as_tokens (identity assertion) work on workers too (e.g. /sync) --
    if config.app_service_config_files.registrations:
        auth.set_app_service_auth(AppServiceTokenAuth(
            config.app_service_config_files.registrations, server_name=config.server.server_name,
            users=accounts.users, devices=accounts.devices,
        ))

    federation: Optional[FederationArea] = None
    if kind.name in ("federation_reader", "federation_sender", "media_repository"):
        st = core.stores
        federation = build_federation_area(
            config=config.federation, reactor=reactor, clock=clock, db=db, server_name=config.server.server_name,
            signing_key=signing_key, events=st.events, state=st.state, current_state=st.current_state,
            rooms=st.rooms, aliases=st.aliases, profiles=st.profiles,
            ratelimit=config.ratelimiting.federation,
        )
    sender: Optional[WorkerFederationSender] = None
    if kind.name == "federation_sender":
        assert federation is not None
        sender = _build_sender(config, clock, db, core, federation, replication, edu_replicas, outbox)
    media: Optional[MediaArea] = None
    if kind.name == "media_repository":
        media = build_media_area(
            config=config.media, server_name=config.server.server_name, reactor=reactor, clock=clock, db=db,
            rc_media_create=config.ratelimiting.media_create,
        )
        assert federation is not None  # remote media is fetched over federation (h/fedmedia)
        media.repository.set_remote(FederationMediaFetcher(federation.client, reactor, federation.https_agent))
    return WorkerComponents(config=config, kind=kind, clock=clock, db=db, core=core, accounts=accounts, auth=auth,
                            replication=replication, http=http, rooms=rooms, sync=sync, media=media,
                            federation=federation, send=send, sender=sender, transactions=transactions)


async def _sync_stores(clock: Clock, db: Database, core: RoomCore) -> SyncStores:
    return SyncStores(
        events=core.stores.events,
        state_groups=core.stores.state,
        current_state=core.stores.current_state,
        forgotten=core.stores.forgotten,
        receipts=ReceiptStore(db, clock, await ReceiptStore.create_stream_ids(db)),
        account_data=AccountDataStore(db, clock, await AccountDataStore.create_stream_ids(db)),
        presence=PresenceStore(db, clock, await PresenceStore.create_stream_ids(db)),
        push_rules=PushRulesStore(db, clock, await PushRulesStore.create_stream_ids(db)),
        txn_ids=core.stores.txn_ids,
        partial_state=core.stores.partial_state,
    )


def _typing_fetcher(http: Optional[ReplicationHttpClient]) -> Callable[[int, int, int], Any]:
    async def fetch(from_token: int, to_token: int, limit: int) -> StreamPage[TypingStreamRow]:
        if http is None:
            raise RuntimeError("typing catch-up needs the master's internal HTTP address (instance_map.main)")
        rows, new_token, limited = await http.fetch_stream_page(TYPING, from_token, to_token, limit)
        return StreamPage([(t, decode_row(TypingStreamRow, r)) for t, r in rows], new_token, limited)

    return fetch


async def _build_sync_area(
    config: RootConfig, clock: Clock, db: Database, core: RoomCore, rooms: RoomsArea, devices: DeviceStore,
    writer: RemoteWriter, http: ReplicationHttpClient, set_user_syncing: Callable[[str, bool], None],
) -> tuple[SyncArea, Callable[[int, int, int], Any]]:
    """The sync area of a worker: the master's readers, remote writers, and replicas fed by replication."""
    notifier, cs = core.notifier, core.stores.current_state
    stores = await _sync_stores(clock, db, core)
    push_rules = PushRulesHandler(stores.push_rules)
    account_data = RemoteAccountDataHandler(writer, store=stores.account_data, notifier=notifier,
                                            push_rules=push_rules)
    receipts = RemoteReceiptsHandler(writer, clock=clock, store=stores.receipts, events=core.stores.events,
                                     current_state=cs, notifier=notifier, account_data=account_data)
    typing = RemoteTypingHandler(writer, clock=clock, notifier=notifier, current_state=cs)
    presence = RemotePresenceHandler(
        writer, set_user_syncing, clock=clock, store=stores.presence, notifier=notifier, current_state=cs,
        server_name=config.server.server_name, enabled=config.presence.enabled,
    )
    e2e = E2ESyncSource(
        keys=E2EKeyStore(db, clock),
        to_device=RemoteToDeviceHandler(writer, notifier=notifier, server_name=config.server.server_name,
                                        store=ToDeviceStore(db, clock), devices=devices,
                                        stream_ids=await create_to_device_id_generator(db)),
        device_lists=ReplicaDeviceListUpdater(notifier=notifier, store=DeviceListStore(db, clock),
                                              keys=E2EKeyStore(db, clock), to_device=ToDeviceStore(db, clock),
                                              stream_ids=await create_device_list_id_generator(db)),
        changes=DeviceListChanges(store=DeviceListStore(db, clock), current_state=cs),
    )
    sync = SyncHandler(clock=clock, notifier=notifier, stores=stores, typing=typing, presence=presence,
                       push_rules=push_rules, visibility=rooms.visibility, e2e=e2e)
    # Unread counts are written by the master's push evaluation and read from the shared database.
    sync.set_unread_counts(UnreadCounter(EventPushActionsStore(db, clock)))
    area = SyncArea(stores=stores, filters=FilterHandler(FilterStore(db, clock)), sync=sync, typing=typing,
                    receipts=receipts, read_markers=RemoteReadMarkersHandler(writer), account_data=account_data,
                    presence=presence, push_rules=push_rules)
    return area, _typing_fetcher(http)


@attrs.frozen
class _EduReplicas:
    typing: TypingHandler
    receipts: ReceiptStore
    presence: PresenceStore
    streams: list[ReplicationStream[Any]]


async def _edu_replicas(clock: Clock, db: Database, core: RoomCore,
                        http: Optional[ReplicationHttpClient]) -> _EduReplicas:
    """Read-only entries of receipts/typing/presence for a federation sender (no sync handler behind them)."""
    # The sender keeps its own typing replica (typing EDUs carry the whole list).
    typing = TypingHandler(clock=clock, notifier=core.notifier, current_state=core.stores.current_state,
                           initial_position=0)
    receipts = ReceiptStore(db, clock, await ReceiptStore.create_stream_ids(db))
    presence = PresenceStore(db, clock, await PresenceStore.create_stream_ids(db))
    return _EduReplicas(typing, receipts, presence, [
        receipts_stream(receipts),
        typing_stream_for_worker(typing, _typing_fetcher(http)),
        presence_stream(presence, core.stores.current_state),
    ])


def _build_sender(config: RootConfig, clock: Clock, db: Database, core: RoomCore, federation: FederationArea,
                  replication: WorkerReplication, edus: _EduReplicas,
                  outbox: FederationOutboxStore) -> WorkerFederationSender:
    """The master's outbound sender, reading positions from this worker's replicas instead of id generators.

    The replication client is positioned before ``start()`` runs, so a fresh sender begins at the
    master's current positions (as the master's own sender would), never at 0.
    """
    dispatcher = replication.dispatcher

    def position(stream: str) -> Callable[[], int]:
        return lambda: dispatcher.position(stream) or 0

    device_lists = DeviceListStore(db, clock)
    store = FederationSenderStore(db, clock)
    service = FederationSenderService(
        server_name=config.server.server_name, clock=clock, client=federation.client, store=store,
        events=core.stores.events, state=core.stores.state, device_lists=device_lists,
        device_list_outbox=DeviceListOutbox(store, E2EKeyStore(db, clock)),
        to_device_outbox=ToDeviceOutbox(ToDeviceStore(db, clock)), notifier=core.notifier,
        events_position=position("events"), device_lists_position=position(DEVICE_LISTS),
        hosts_in_room=federation.visibility.get_hosts_in_room,
        partial_servers=PartialStateStore(db, clock).get_servers,
        policy=retry_policy_from_config(config.federation.destination_retry),
    )
    service.set_outbox(outbox, position(FEDERATION_OUTBOX))
    feed = EphemeralStreamFeed(
        server_name=config.server.server_name, clock=clock, notifier=core.notifier, sender=service,
        typing=edus.typing, receipts=edus.receipts, presence=edus.presence,
        current_state=core.stores.current_state,
        positions={StreamName.TYPING: edus.typing.get_current_token, StreamName.RECEIPTS: position(RECEIPTS),
                   StreamName.PRESENCE: position(PRESENCE)},
    )
    return WorkerFederationSender(service, feed)


def build_worker_servlet_groups(config: RootConfig, c: WorkerComponents) -> dict[str, list[RestServlet]]:
    """The servlets behind each http resource name, for this worker's kind."""
    groups: dict[str, list[RestServlet]] = {name: [] for name in ("client", "federation", "media", "keys")}
    if c.kind.name == "sync":
        assert c.sync is not None and c.rooms is not None and c.send is not None
        sa = c.sync
        client: list[RestServlet] = [
            VersionsServlet(),
            CapabilitiesServlet(config.server, config.registration, c.auth),
            *build_sync_area_servlets(c.auth, sa, c.clock),
            *build_rooms_servlets(c.auth, c.rooms, room_creation=c.core.room_creation, send=c.send),
        ]
        groups["client"] = select_methods(client, SYNC_WRITES)
    elif c.kind.name == "media_repository":
        assert c.media is not None
        if config.media.enable_media_repo:
            servlets = build_media_servlets(c.auth, config.media, c.media.repository, c.media.thumbnails)
            groups["media"] = list(servlets.media)
            groups["client"] = list(servlets.client)
            assert c.federation is not None
            groups["federation"] = list(
                federation_media_servlets(c.federation.authenticator, c.media.repository, c.media.thumbnails)
            )
    elif c.kind.name == "federation_reader":
        assert c.federation is not None and c.rooms is not None
        assert c.transactions is not None
        groups["federation"], groups["keys"] = build_federation_servlets(config, c.federation, c.rooms.directory)
        groups["federation"].append(SendTransactionServlet(c.federation.authenticator, c.transactions))
    # federation_sender: no HTTP API (health and metrics only).
    return groups
