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
from matrixd.handlers.auth import AccessTokenAuth
from matrixd.handlers.e2e.area import E2EArea, build_e2e_area
from matrixd.http.server import RestServlet
from matrixd.media.area import MediaArea, build_media_area
from matrixd.replication.roles import MasterReplication, build_master_replication
from matrixd.rest.client.capabilities import CapabilitiesServlet
from matrixd.rest.client.keys import e2e_key_servlets
from matrixd.rest.client.room_keys import room_keys_servlets
from matrixd.rest.client.to_device import SendToDeviceServlet
from matrixd.rest.client.versions import VersionsServlet
from matrixd.rest.client.wellknown import ClientWellKnownServlet, ServerWellKnownServlet
from matrixd.rest.media import build_media_servlets
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
    media: MediaArea
    replication: MasterReplication
    e2e: E2EArea


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

    # -- media repository: uploads, downloads, thumbnails (files under media_store_path) --
    media = build_media_area(
        config=config.media, server_name=config.server.server_name, reactor=reactor, clock=clock, db=db,
        rc_media_create=config.ratelimiting.media_create,
    )

    # -- replication: stream registry, the master's dispatcher and publisher, the TCP server --
    # Persisted events reach workers (and this process's dispatcher) through the publisher,
    # which pages committed rows up to each stream's current token.
    replication = await build_master_replication(
        clock=clock, db=db, server_name=config.server.server_name,
        secret=config.workers.worker_replication_secret, notifier=core.notifier,
        events=core.stores.events, current_state=core.stores.current_state,
        stream_ids=core.stores.stream_ids, backfill_ids=core.stores.backfill_ids,
        users=accounts.users, record_last_seen=accounts.devices.record_last_seen,
    )
    core.persister.add_persisted_callback(
        lambda _event: replication.publisher.notify("events", "current_state_deltas")
    )

    # -- end-to-end encryption: keys, cross-signing, device lists, to-device, key backup --
    e2e = await build_e2e_area(
        clock=clock, db=db, server_name=config.server.server_name, notifier=core.notifier,
        current_state=core.stores.current_state, users=accounts.users, devices=accounts.devices,
    )

    return MasterComponents(config=config, clock=clock, db=db, core=core, accounts=accounts, auth=auth,
                            media=media, replication=replication, e2e=e2e)


def build_servlet_groups(config: RootConfig, c: MasterComponents) -> dict[str, list[RestServlet]]:
    """The servlets behind each http resource name, for the master role."""
    client: list[RestServlet] = [
        VersionsServlet(),
        CapabilitiesServlet(config.server, config.registration, c.auth),
        ClientWellKnownServlet(config.server),
    ]
    # -- end-to-end encryption --
    client += e2e_key_servlets(c.auth, c.e2e.keys, c.e2e.cross_signing)
    client.append(SendToDeviceServlet(c.auth, c.e2e.to_device))
    client += room_keys_servlets(c.auth, c.e2e.backup)

    if config.server.serve_server_wellknown:
        client.append(ServerWellKnownServlet(config.server))

    # -- media repository: /_matrix/media/* in "media", /_matrix/client/v1/media/* in "client" --
    media: list[RestServlet] = []
    if config.media.enable_media_repo:
        media_servlets = build_media_servlets(c.auth, config.media, c.media.repository, c.media.thumbnails)
        media.extend(media_servlets.media)
        client.extend(media_servlets.client)

    return {
        "client": client,
        "federation": [],
        "media": media,
        "keys": [],
        "replication": [],
    }
