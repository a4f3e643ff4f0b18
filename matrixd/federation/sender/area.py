"""Everything outbound federation adds to a process, built once with explicit arguments.

``build_federation_out_area`` wires the sender (started by the role's start-up
code with ``await area.sender.start()`` when ``send_federation`` is on), the
inbound EDU registry with its handlers, the remote device cache and the
outbound query clients.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from matrixd.federation.sender.durable_edus import DeviceListOutbox, ToDeviceOutbox
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


@attrs.define
class FederationOutArea:
    store: FederationSenderStore
    remote_devices: RemoteDeviceCacheStore
    openid_tokens: OpenIdTokenStore
    sender: FederationSenderService
    send_federation: bool


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
) -> FederationOutArea:
    store = FederationSenderStore(db, clock)
    sender = FederationSenderService(
        server_name=server_name, clock=clock, client=client, store=store, events=events, state=state,
        device_lists=device_lists, device_list_outbox=DeviceListOutbox(store, e2e_keys),
        to_device_outbox=ToDeviceOutbox(to_device), notifier=notifier,
        events_position=event_stream_ids.get_current_token,
        device_lists_position=device_lists_position.current_position,
        hosts_in_room=visibility.get_hosts_in_room,
    )
    return FederationOutArea(
        store=store, remote_devices=RemoteDeviceCacheStore(db, clock), openid_tokens=OpenIdTokenStore(db, clock),
        sender=sender, send_federation=send_federation,
    )
