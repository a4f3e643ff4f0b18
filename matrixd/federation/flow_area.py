"""The federation event flow of one process: inbound transactions, membership over federation, backfill.

Built once by the role's wiring (``matrixd.app.master``) from the room core and
the federation foundation (``FederationArea``).
"""

from __future__ import annotations

import attrs

from matrixd.app.core import RoomCore
from matrixd.federation.area import FederationArea
from matrixd.federation.backfill import FederationBackfiller
from matrixd.federation.edus.registry import EduRegistry
from matrixd.federation.inbound.events import FederationEventHandler
from matrixd.federation.inbound.transactions import TransactionHandler
from matrixd.federation.inbound.txn_store import ReceivedTransactionStore
from matrixd.federation.membership.partial_state import PartialStateResync
from matrixd.federation.membership.remote import RemoteMembershipHandler
from matrixd.federation.membership.serve import MembershipServer
from matrixd.federation.missing_events import RemoteEventFetcher
from matrixd.federation.membership.distribute import PduDistributor
from matrixd.federation.sender_api import FederationSender
from matrixd.handlers.events.federated import ReceivedEventPersister


@attrs.define
class FederationFlowArea:
    sender: FederationSender
    distributor: PduDistributor
    edus: EduRegistry
    fetcher: RemoteEventFetcher
    received: ReceivedEventPersister
    event_handler: FederationEventHandler
    transactions: TransactionHandler
    membership_server: MembershipServer
    remote_membership: RemoteMembershipHandler
    backfiller: FederationBackfiller
    partial_state: PartialStateResync  # completes partial-state joins; resume() at start-up


def build_federation_flow_area(core: RoomCore, federation: FederationArea, sender: FederationSender,
                               edus: EduRegistry) -> FederationFlowArea:
    """Everything of the event flow, on the outbound area's sender and inbound EDU registry."""
    st = core.stores
    distributor = PduDistributor(core.server_name, st.current_state, sender)
    fetcher = RemoteEventFetcher(federation.client, federation.keyring)
    received = ReceivedEventPersister(events=st.events, current_state=st.current_state, state_calc=core.state_calc,
                                      persister=core.persister)
    event_handler = FederationEventHandler(
        events=st.events, current_state=st.current_state, state_calc=core.state_calc, received=received,
        fetcher=fetcher, room_lock=core.creation.room_lock, partial_state=st.partial_state,
    )
    transactions = TransactionHandler(
        rooms=st.rooms, keyring=federation.keyring, acl=federation.acl, event_handler=event_handler, edus=edus,
        store=ReceivedTransactionStore(core.db, core.clock),
    )
    membership_server = MembershipServer(
        server_name=core.server_name, signing_key=core.signing_key, keyring=federation.keyring, rooms=st.rooms,
        events=st.events, state=st.state, current_state=st.current_state, creation=core.creation,
        membership=core.membership, event_handler=event_handler, distributor=distributor, received=received,
        partial_state=st.partial_state,
    )
    partial_state = PartialStateResync(
        clock=core.clock, server_name=core.server_name, store=st.partial_state, fetcher=fetcher, rooms=st.rooms,
        events=st.events, state=st.state, state_calc=core.state_calc, event_handler=event_handler,
        persister=core.persister, room_lock=core.creation.room_lock,
        forget_state_after=core.creation.forget_state_after,
    )
    remote_membership = RemoteMembershipHandler(
        clock=core.clock, server_name=core.server_name, signing_key=core.signing_key, client=federation.client,
        keyring=federation.keyring, fetcher=fetcher, rooms=st.rooms, events=st.events,
        current_state=st.current_state, profiles=st.profiles, event_handler=event_handler, received=received,
        room_lock=core.creation.room_lock, partial_state=st.partial_state, resync=partial_state,
    )
    core.membership.set_remote_membership(remote_membership)
    backfiller = FederationBackfiller(
        server_name=core.server_name, client=federation.client, fetcher=fetcher, rooms=st.rooms, events=st.events,
        current_state=st.current_state, event_handler=event_handler,
    )
    return FederationFlowArea(
        sender=sender, distributor=distributor, edus=edus, fetcher=fetcher, received=received,
        event_handler=event_handler, transactions=transactions, membership_server=membership_server,
        remote_membership=remote_membership, backfiller=backfiller, partial_state=partial_state,
    )
