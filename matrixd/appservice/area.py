"""Wiring of the application service area for the master process."""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import attrs

from matrixd.appservice.api import AgentTransport, AppServiceApi, AppServiceTransport
from matrixd.appservice.auth import AppServiceTokenAuth
from matrixd.appservice.ephemeral import EphemeralFollower
from matrixd.appservice.interest import InterestChecker
from matrixd.appservice.queries import AppServiceNamespaces, AppServiceQueries
from matrixd.appservice.registration import AppServiceRegistration
from matrixd.appservice.sender import AppServiceTransactions
from matrixd.storage.aliases import AliasStore
from matrixd.storage.accounts import DeviceStore, UserStore
from matrixd.storage.appservice import AppServiceStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.database import Database
from matrixd.storage.events import EventStore
from matrixd.storage.profiles import ProfileStore
from matrixd.storage.streams import StreamIdGenerator
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)


@attrs.define
class AppServiceArea:
    services: tuple[AppServiceRegistration, ...]
    store: AppServiceStore
    api: AppServiceApi
    transport: AppServiceTransport
    token_auth: AppServiceTokenAuth
    namespaces: AppServiceNamespaces
    queries: AppServiceQueries
    interest: InterestChecker
    transactions: AppServiceTransactions
    #: Set by the master when a service opted in to ephemeral events (typing, receipts, presence).
    ephemeral: Optional[EphemeralFollower] = None

    async def close(self) -> None:
        """Stop the senders and drop pooled connections (process shutdown)."""
        if self.ephemeral is not None:
            self.ephemeral.stop()
        self.transactions.stop()
        if isinstance(self.transport, AgentTransport):
            await self.transport.close()


async def build_app_service_area(
    *, services: Sequence[AppServiceRegistration], reactor: Any, clock: Clock, db: Database, server_name: str,
    users: UserStore, devices: DeviceStore, profiles: ProfileStore, events: EventStore,
    current_state: CurrentStateStore, aliases: AliasStore, stream_ids: StreamIdGenerator,
    transport: Optional[AppServiceTransport] = None,
) -> AppServiceArea:
    """Build the area and make sure every service's sender user exists (it does implicitly, per spec)."""
    services = tuple(services)
    for service in services:
        sender = service.sender(server_name)
        if await users.create_user(sender, None, appservice_id=service.id):
            await profiles.create_profile(sender, service.sender_localpart)
            logger.info("created application service %s's sender %s", service.id, sender)
    transport = transport if transport is not None else AgentTransport(reactor, clock)
    api = AppServiceApi(transport, clock)
    store = AppServiceStore(db, clock)
    interest = InterestChecker(clock=clock, server_name=server_name, current_state=current_state,
                               aliases=aliases)
    transactions = AppServiceTransactions(services, clock=clock, api=api, store=store, events=events,
                                          interest=interest, current_token=stream_ids.get_current_token,
                                          server_name=server_name)
    return AppServiceArea(
        services=services, store=store, api=api, transport=transport,
        token_auth=AppServiceTokenAuth(services, server_name=server_name, users=users, devices=devices),
        namespaces=AppServiceNamespaces(services, server_name),
        queries=AppServiceQueries(services, api, interest, server_name=server_name, users=users,
                                  profiles=profiles),
        interest=interest, transactions=transactions,
    )
