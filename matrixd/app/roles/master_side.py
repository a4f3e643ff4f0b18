"""What the master adds so that workers can exist: the sync area's streams, and the write endpoints.

Called from the "workers" block of :func:`matrixd.app.master.build_master_components`
(a monolith runs the same code: its streams simply have no subscribers).
"""

from __future__ import annotations

from matrixd.handlers.account_data import AccountDataHandler
from matrixd.handlers.e2e.area import E2EArea
from matrixd.handlers.e2e.to_device import ToDeviceHandler
from matrixd.handlers.presence import PresenceHandler
from matrixd.handlers.read_markers import ReadMarkersHandler
from matrixd.handlers.receipts import ReceiptsHandler
from matrixd.handlers.rooms.send import EventSendHandler
from matrixd.handlers.typing import TypingHandler
from matrixd.replication.e2e_streams import DEVICE_LISTS, TO_DEVICE, e2e_streams
from matrixd.replication.http.server import ReplicationEndpoints
from matrixd.federation.inbound.transactions import TransactionHandler
from matrixd.replication.http.writes import MasterWriteTargets, register_federation_endpoint, register_write_endpoints
from matrixd.replication.roles import MasterReplication
from matrixd.replication.sync_streams import (
    ACCOUNT_DATA,
    PRESENCE,
    RECEIPTS,
    TYPING,
    sync_streams_for_master,
)
from matrixd.storage.account_data import AccountDataStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.presence import PresenceStore
from matrixd.storage.push_rules import PushRulesStore
from matrixd.storage.receipts import ReceiptStore
from matrixd.storage.streams import StreamIdGenerator
from matrixd.config import RootConfig
from matrixd.federation.sender.outbox import OutboxFederationSender
from matrixd.federation.sender_api import FederationSender
from matrixd.replication.federation_streams import FEDERATION_OUTBOX, federation_outbox_stream
from matrixd.storage.database import Database
from matrixd.storage.federation_outbox import FederationOutboxStore
from matrixd.util.clock import Clock


def publish_sync_streams(
    replication: MasterReplication,
    *,
    receipts_store: ReceiptStore,
    account_data_store: AccountDataStore,
    presence_store: PresenceStore,
    push_rules_store: PushRulesStore,
    current_state: CurrentStateStore,
    typing: TypingHandler,
    receipts: ReceiptsHandler,
    account_data: AccountDataHandler,
    presence: PresenceHandler,
) -> None:
    """Register the five sync streams and make their writers announce through the publisher.

    From here on the master wakes its own ``/sync`` requests for these
    streams the way workers do: rows paged from the writer, through the
    dispatcher.  Presence also learns who syncs on workers (``USER_SYNC``).
    """
    for stream in sync_streams_for_master(
        receipts=receipts_store, account_data=account_data_store, presence=presence_store,
        push_rules=push_rules_store, current_state=current_state, typing=typing,
    ):
        replication.add_stream(stream)
    notify = replication.publisher.notify
    typing.set_publisher(lambda: notify(TYPING))
    receipts.set_publisher(lambda: notify(RECEIPTS))
    account_data.set_publisher(lambda: notify(ACCOUNT_DATA))
    presence.set_publisher(lambda: notify(PRESENCE))
    presence.set_remote_syncing(replication.activity.syncing_users)
    # Push rules are not written yet (editing them belongs to the push feature); their
    # writer will call notify("push_rules") after each commit.


def publish_e2e_streams(replication: MasterReplication, e2e: E2EArea) -> None:
    """Register ``to_device`` and ``device_lists`` and make their writers announce through the publisher."""
    for stream in e2e_streams(e2e.stores.to_device, e2e.stores.device_lists,
                              to_device_token=e2e.to_device.current_position,
                              device_lists_token=e2e.device_lists.current_position):
        replication.add_stream(stream)
    notify = replication.publisher.notify
    e2e.to_device.set_publisher(lambda: notify(TO_DEVICE))
    e2e.device_lists.set_publisher(lambda: notify(DEVICE_LISTS))


def build_write_endpoints(
    *,
    send: EventSendHandler,
    typing: TypingHandler,
    receipts: ReceiptsHandler,
    read_markers: ReadMarkersHandler,
    presence: PresenceHandler,
    account_data: AccountDataHandler,
    to_device: ToDeviceHandler,
    event_ids: StreamIdGenerator,
    receipts_store: ReceiptStore,
    account_data_store: AccountDataStore,
    presence_store: PresenceStore,
) -> ReplicationEndpoints:
    """The internal write endpoints (``/_matrixd/replication/...``) served on the master's ``replication`` listener."""
    endpoints = ReplicationEndpoints()
    register_write_endpoints(endpoints, MasterWriteTargets(
        send=send, typing=typing, receipts=receipts, read_markers=read_markers, presence=presence,
        account_data=account_data, to_device=to_device,
        positions={
            "events": event_ids.get_max_allocated,
            RECEIPTS: receipts_store.stream_ids.get_max_allocated,
            ACCOUNT_DATA: account_data_store.stream_ids.get_max_allocated,
            PRESENCE: presence_store.stream_ids.get_max_allocated,
            TYPING: typing.get_current_token,
        },
    ))
    return endpoints


async def federation_sender_for_master(
    config: RootConfig, clock: Clock, db: Database, replication: MasterReplication, local: FederationSender
) -> FederationSender:
    """What the master's federation code hands PDUs/EDUs to: ``local`` when the master sends, else the outbox.

    The ``federation_outbox`` stream is registered either way (a monolith simply never writes it).
    """
    store = FederationOutboxStore(db, clock)
    ids = await store.create_id_generator()
    replication.add_stream(federation_outbox_stream(store, current_token=ids.get_current_token))
    if config.workers.master_sends_federation:
        return local
    return OutboxFederationSender(server_name=config.server.server_name, store=store, stream_ids=ids,
                                  notify=lambda: replication.publisher.notify(FEDERATION_OUTBOX))


def register_federation_transaction_endpoint(
    endpoints: ReplicationEndpoints, transactions: TransactionHandler, event_ids: StreamIdGenerator
) -> None:
    """``federation_transaction``: an inbound ``/send`` a federation reader authenticated, run here."""
    register_federation_endpoint(endpoints, transactions, {"events": event_ids.get_max_allocated})
