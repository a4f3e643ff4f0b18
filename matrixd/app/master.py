"""The master role's components: built once, after the database schema is ready.

Each feature area builds its stores and handlers here with explicit arguments
and contributes servlets to the resource groups; nothing reaches for a global.
"""

from __future__ import annotations

from typing import Any

import attrs
from signedjson.types import SigningKey

from matrixd.app.core import RoomCore, build_room_core
from matrixd.config import RootConfig
from matrixd.events.room_versions import get_room_version
from matrixd.federation.area import FederationArea, build_federation_area
from matrixd.handlers.auth import AccessTokenAuth
from matrixd.http.server import RestServlet
from matrixd.rest.client.capabilities import CapabilitiesServlet
from matrixd.rest.client.versions import VersionsServlet
from matrixd.rest.client.wellknown import ClientWellKnownServlet, ServerWellKnownServlet
from matrixd.rest.federation.events import (
    BackfillServlet,
    EventAuthServlet,
    EventServlet,
    GetMissingEventsServlet,
    StateIdsServlet,
    StateServlet,
)
from matrixd.rest.federation.public_rooms import PublicRoomsServlet
from matrixd.rest.federation.query import QueryDirectoryServlet, QueryProfileServlet
from matrixd.rest.federation.version import FederationVersionServlet
from matrixd.rest.key.query import RemoteKeyServlet
from matrixd.rest.key.server import LocalKeyServlet
from matrixd.storage.accounts import DeviceStore, TokenStore, UserStore
from matrixd.storage.database import Database
from matrixd.util.clock import Clock


@attrs.define
class AccountStores:
    users: UserStore
    devices: DeviceStore
    tokens: TokenStore


@attrs.define
class MasterComponents:
    config: RootConfig
    clock: Clock
    db: Database
    core: RoomCore
    accounts: AccountStores
    auth: AccessTokenAuth
    federation: FederationArea


async def build_master_components(
    config: RootConfig, reactor: Any, clock: Clock, db: Database, signing_key: SigningKey
) -> MasterComponents:
    rc = config.ratelimiting.message
    core = await build_room_core(
        clock=clock,
        db=db,
        server_name=config.server.server_name,
        signing_key=signing_key,
        default_room_version=get_room_version(config.server.default_room_version),
        rc_message={"per_second": rc.per_second, "burst_count": rc.burst_count},
    )
    accounts = AccountStores(UserStore(db, clock), DeviceStore(db, clock), TokenStore(db, clock))
    auth = AccessTokenAuth(clock, accounts.users, accounts.tokens)

    # -- federation: keys, keyring, outbound client, inbound authentication, read handlers --
    stores = core.stores
    federation = build_federation_area(
        config=config.federation, reactor=reactor, clock=clock, db=db, server_name=config.server.server_name,
        signing_key=signing_key, events=stores.events, state=stores.state, current_state=stores.current_state,
        rooms=stores.rooms, aliases=stores.aliases, profiles=stores.profiles,
    )

    return MasterComponents(
        config=config, clock=clock, db=db, core=core, accounts=accounts, auth=auth, federation=federation
    )


def build_servlet_groups(config: RootConfig, c: MasterComponents) -> dict[str, list[RestServlet]]:
    """The servlets behind each http resource name, for the master role."""
    client: list[RestServlet] = [
        VersionsServlet(),
        CapabilitiesServlet(config.server, config.registration, c.auth),
        ClientWellKnownServlet(config.server),
    ]
    if config.server.serve_server_wellknown:
        client.append(ServerWellKnownServlet(config.server))

    # -- federation: the read-only federation API and the key server --
    fed = c.federation
    federation: list[RestServlet] = [
        FederationVersionServlet(),
        EventServlet(fed.authenticator, fed.acl, fed.reader),
        StateServlet(fed.authenticator, fed.acl, fed.reader),
        StateIdsServlet(fed.authenticator, fed.acl, fed.reader),
        EventAuthServlet(fed.authenticator, fed.acl, fed.reader),
        BackfillServlet(fed.authenticator, fed.acl, fed.reader),
        GetMissingEventsServlet(fed.authenticator, fed.acl, fed.reader),
        QueryProfileServlet(fed.authenticator, fed.reader),
        QueryDirectoryServlet(fed.authenticator, fed.reader),
        PublicRoomsServlet(fed.authenticator, fed.public_rooms, config.federation.allow_public_rooms),
    ]
    keys: list[RestServlet] = [LocalKeyServlet(fed.local_keys), RemoteKeyServlet(fed.notary)]

    return {
        "client": client,
        "federation": federation,
        "media": [],
        "keys": keys,
        "replication": [],
    }
