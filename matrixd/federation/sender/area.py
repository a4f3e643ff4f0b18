"""Everything outbound federation adds to a process, built once with explicit arguments.

``build_federation_out_area`` wires the sender (started by the role's start-up
code with ``await area.sender.start()`` when ``send_federation`` is on), the
inbound EDU registry with its handlers, the remote device cache, the outbound
query clients (bound into the e2e, profile and alias handlers by the role's
wiring) and the handlers of inbound key, OpenID and hierarchy queries.
"""

from __future__ import annotations

from typing import Mapping, Optional, Protocol, Sequence

import attrs

from matrixd.federation.edus.device_lists import DeviceListEduHandler
from matrixd.federation.edus.ephemeral import PresenceEduHandler, ReceiptEduHandler, TypingEduHandler
from matrixd.federation.edus.registry import EduRegistry
from matrixd.federation.edus.sync_sinks import SyncAreaSinks
from matrixd.federation.edus.to_device import DirectToDeviceEduHandler
from matrixd.federation.sender.backoff import RetryPolicy
from matrixd.federation.sender.ephemeral_feed import EphemeralStreamFeed
from matrixd.handlers.presence import PresenceHandler
from matrixd.handlers.receipts import ReceiptsHandler
from matrixd.handlers.typing import TypingHandler
from matrixd.storage.partial_state import PartialStateStore
from matrixd.storage.presence import PresenceStore
from matrixd.storage.receipts import ReceiptStore
from matrixd.federation.inbound_queries import FederationKeyQueries, OpenIdTokens, SpaceHierarchy
from matrixd.federation.queries import (
    FederationAliasResolver,
    FederationE2EKeys,
    FederationProfiles,
    RemoteDeviceResync,
)
from matrixd.federation.sender.durable_edus import (
    DEVICE_LIST_UPDATE,
    DIRECT_TO_DEVICE,
    SIGNING_KEY_UPDATE,
    DeviceListOutbox,
    ToDeviceOutbox,
)
from matrixd.handlers.e2e.area import E2EArea
from matrixd.handlers.e2e.remote import NoFederationE2EKeys, RemoteE2EKeys
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.rooms import RoomStore
from matrixd.types import JsonDict
from matrixd.federation.sender.service import FederationSenderService
from matrixd.federation.transport.client import MatrixFederationClient
from matrixd.federation.visibility import ServerVisibility
from matrixd.storage.database import Database
from matrixd.storage.device_lists import DeviceListStore
from matrixd.storage.e2e_keys import E2EKeyStore
from matrixd.storage.events import EventStore
from matrixd.storage.federation_sender import FederationSenderStore, OpenIdTokenStore, RemoteDeviceCacheStore
from matrixd.storage.state import StateGroupStore
from matrixd.storage.streams import StreamIdGenerator
from matrixd.storage.to_device import ToDeviceStore
from matrixd.streams.notifier import Notifier
from matrixd.util.clock import Clock


class DeviceListsPosition(Protocol):
    """Where the device_lists stream is (``DeviceListUpdater.current_position``)."""

    def current_position(self) -> int: ...


@attrs.frozen(slots=True)
class SyncHandlers:
    """What federation needs of the sync area: its ephemeral handlers and their streams' stores."""

    typing: TypingHandler
    receipts: ReceiptsHandler
    receipt_store: ReceiptStore
    presence: PresenceHandler
    presence_store: PresenceStore


@attrs.define
class FederationOutArea:
    store: FederationSenderStore
    remote_devices: RemoteDeviceCacheStore
    sender: FederationSenderService
    send_federation: bool
    # Inbound EDUs: the transaction servlet calls ``edus.handle(origin, edu_type, content)``.
    edus: EduRegistry
    typing: TypingEduHandler
    receipts: ReceiptEduHandler
    presence: PresenceEduHandler
    device_list_edus: DeviceListEduHandler
    # Outbound queries.
    remote_e2e_keys: FederationE2EKeys
    device_resync: RemoteDeviceResync
    profiles: FederationProfiles
    aliases: FederationAliasResolver
    # Inbound queries.
    key_queries: FederationKeyQueries
    openid: OpenIdTokens
    hierarchy: SpaceHierarchy
    # Outbound typing/receipts/presence from the sync area's streams (None: no sync area here).
    ephemeral_feed: Optional[EphemeralStreamFeed] = None

    async def start(self) -> None:
        """Start sending (the role's start-up calls this when ``send_federation`` is on)."""
        await self.sender.start()
        if self.ephemeral_feed is not None:
            self.ephemeral_feed.start()

    def stop(self) -> None:
        if self.ephemeral_feed is not None:
            self.ephemeral_feed.stop()
        self.sender.stop()


class LateRemoteE2EKeys:
    """A ``RemoteE2EKeys`` for the e2e area, built before the federation client exists.

    Until ``bind`` it behaves like ``NoFederationE2EKeys`` (every server unreachable).
    """

    def __init__(self) -> None:
        self._target: RemoteE2EKeys = NoFederationE2EKeys()

    def bind(self, target: RemoteE2EKeys) -> None:
        self._target = target

    async def query_keys(self, destination: str, device_keys: Mapping[str, Sequence[str]],
                         timeout_ms: int) -> JsonDict:
        return await self._target.query_keys(destination, device_keys, timeout_ms)

    async def claim_keys(self, destination: str, one_time_keys: Mapping[str, Mapping[str, str]],
                         timeout_ms: int) -> JsonDict:
        return await self._target.claim_keys(destination, one_time_keys, timeout_ms)


def build_federation_out_area(
    *,
    clock: Clock,
    db: Database,
    server_name: str,
    client: MatrixFederationClient,
    notifier: Notifier,
    events: EventStore,
    state: StateGroupStore,
    event_stream_ids: StreamIdGenerator,
    visibility: ServerVisibility,
    device_lists: DeviceListStore,
    device_lists_position: DeviceListsPosition,
    e2e_keys: E2EKeyStore,
    to_device: ToDeviceStore,
    send_federation: bool,
    e2e: E2EArea,
    rooms: RoomStore,
    current_state: CurrentStateStore,
    sync: Optional[SyncHandlers] = None,
    retry_policy: RetryPolicy = RetryPolicy(),
    partial_state: Optional[PartialStateStore] = None,
) -> FederationOutArea:
    store = FederationSenderStore(db, clock)
    remote_devices = RemoteDeviceCacheStore(db, clock)
    sender = FederationSenderService(
        server_name=server_name, clock=clock, client=client, store=store, events=events, state=state,
        device_lists=device_lists, device_list_outbox=DeviceListOutbox(store, e2e_keys),
        to_device_outbox=ToDeviceOutbox(to_device), notifier=notifier,
        events_position=event_stream_ids.get_current_token,
        device_lists_position=device_lists_position.current_position,
        hosts_in_room=visibility.get_hosts_in_room, policy=retry_policy,
        partial_servers=(partial_state or PartialStateStore(db, clock)).get_servers,
    )
    resync = RemoteDeviceResync(client, remote_devices)
    registry = EduRegistry()
    typing = TypingEduHandler(visibility.is_host_in_room)
    receipts = ReceiptEduHandler(visibility.is_host_in_room)
    presence = PresenceEduHandler()
    device_list_edus = DeviceListEduHandler(cache=remote_devices, resync=resync, updater=e2e.device_lists,
                                            device_lists=device_lists)
    registry.register("m.typing", typing)
    registry.register("m.receipt", receipts)
    registry.register("m.presence", presence)
    registry.register(DIRECT_TO_DEVICE, DirectToDeviceEduHandler(server_name, e2e.to_device))
    registry.register(DEVICE_LIST_UPDATE, device_list_edus.on_device_list_update)
    registry.register(SIGNING_KEY_UPDATE, device_list_edus.on_signing_key_update)
    feed: Optional[EphemeralStreamFeed] = None
    if sync is not None:
        sinks = SyncAreaSinks(typing=sync.typing, receipts=sync.receipts, presence=sync.presence, events=events)
        typing.add_sink(sinks)
        receipts.add_sink(sinks)
        presence.add_sink(sinks)
        feed = EphemeralStreamFeed(
            server_name=server_name, clock=clock, notifier=notifier, sender=sender, typing=sync.typing,
            receipts=sync.receipt_store, presence=sync.presence_store, current_state=current_state,
        )
    return FederationOutArea(
        ephemeral_feed=feed,
        store=store, remote_devices=remote_devices, sender=sender, send_federation=send_federation,
        edus=registry, typing=typing, receipts=receipts, presence=presence, device_list_edus=device_list_edus,
        remote_e2e_keys=FederationE2EKeys(client, remote_devices, device_lists, server_name),
        device_resync=resync, profiles=FederationProfiles(client), aliases=FederationAliasResolver(client),
        key_queries=FederationKeyQueries(server_name=server_name, keys=e2e.keys, store=store),
        openid=OpenIdTokens(server_name=server_name, clock=clock, tokens=OpenIdTokenStore(db, clock)),
        hierarchy=SpaceHierarchy(rooms=rooms, events=events, current_state=current_state, visibility=visibility),
    )
