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
from matrixd.handlers.ratelimit import RateLimitConfig, Ratelimiter
from matrixd.handlers.rooms.access import RoomAccessChecker
from matrixd.handlers.rooms.aliases import RoomAliasHandler
from matrixd.handlers.rooms.area import RoomsArea
from matrixd.handlers.rooms.context import EventContextHandler
from matrixd.handlers.rooms.directory import RoomDirectoryHandler
from matrixd.handlers.rooms.members import RoomMembersHandler
from matrixd.handlers.rooms.membership_requests import MembershipRatelimits, MembershipRequestHandler
from matrixd.handlers.rooms.messages import PaginationHandler
from matrixd.handlers.rooms.report import ReportHandler
from matrixd.handlers.rooms.serialize import ClientEventSerializer
from matrixd.handlers.rooms.state import RoomStateHandler
from matrixd.handlers.rooms.timeline import TimelineWalker
from matrixd.handlers.rooms.upgrade import RoomUpgradeHandler
from matrixd.handlers.visibility import VisibilityFilter
from matrixd.http.server import RestServlet
from matrixd.media.area import MediaArea, build_media_area
from matrixd.replication.roles import MasterReplication, build_master_replication
from matrixd.rest.client.capabilities import CapabilitiesServlet
from matrixd.rest.client.rooms import build_rooms_servlets
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
from matrixd.rest.media import build_media_servlets
from matrixd.storage.accounts import DeviceStore, TokenStore, UserStore
from matrixd.storage.database import Database
from matrixd.storage.directory import PublicRoomsStore
from matrixd.storage.reports import ReportStore
from matrixd.storage.state_lookup import StateEntryStore
from matrixd.storage.visibility import VisibilityStore
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
    rooms: RoomsArea
    media: MediaArea
    replication: MasterReplication
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

    # -- rooms area: visibility, room reads, directory, upgrades, reports --------
    st = core.stores
    state_entries = StateEntryStore(db, clock)
    visibility = VisibilityFilter(events=st.events, state=st.state, state_entries=state_entries,
                                  visibility_store=VisibilityStore(db, clock))
    serializer = ClientEventSerializer(clock=clock, events=st.events, state=st.state, state_entries=state_entries,
                                       txn_ids=st.txn_ids)
    access = RoomAccessChecker(events=st.events, state=st.state, current_state=st.current_state)
    walker = TimelineWalker(events=st.events, visibility=visibility)
    public_rooms = PublicRoomsStore(db, clock)
    reports_store = ReportStore(db, clock)
    aliases = RoomAliasHandler(
        server_name=config.server.server_name, aliases=st.aliases, rooms=st.rooms, current_state=st.current_state,
        users=accounts.users, access=access, send=core.send,
    )
    rcl = config.ratelimiting

    def limiter(settings: Any) -> Ratelimiter:
        return Ratelimiter(clock, RateLimitConfig(settings.per_second, settings.burst_count))

    rooms = RoomsArea(
        visibility=visibility, serializer=serializer, access=access, walker=walker, public_rooms=public_rooms,
        reports_store=reports_store,
        messages=PaginationHandler(access=access, walker=walker, events=st.events, state=st.state,
                                   serializer=serializer),
        context=EventContextHandler(access=access, walker=walker, visibility=visibility, events=st.events,
                                    state=st.state, serializer=serializer),
        members=RoomMembersHandler(access=access, walker=walker, events=st.events, state=st.state,
                                   current_state=st.current_state, serializer=serializer),
        state=RoomStateHandler(server_name=config.server.server_name, access=access, events=st.events,
                               current_state=st.current_state, aliases=st.aliases, send=core.send,
                               membership=core.membership, serializer=serializer),
        aliases=aliases,
        membership_requests=MembershipRequestHandler(
            membership=core.membership, aliases=aliases, current_state=st.current_state,
            limits=MembershipRatelimits(
                joins_local=limiter(rcl.joins_local), joins_per_room=limiter(rcl.joins_per_room),
                invites_per_room=limiter(rcl.invites_per_room), invites_per_user=limiter(rcl.invites_per_user),
                invites_per_issuer=limiter(rcl.invites_per_issuer),
            ),
        ),
        directory=RoomDirectoryHandler(server_name=config.server.server_name, rooms=st.rooms,
                                       public_rooms=public_rooms, events=st.events, current_state=st.current_state,
                                       users=accounts.users),
        upgrade=RoomUpgradeHandler(server_name=config.server.server_name, rooms=st.rooms, aliases=st.aliases,
                                   events=st.events, current_state=st.current_state, profiles=st.profiles,
                                   creation=core.creation),
        reports=ReportHandler(server_name=config.server.server_name, reports=reports_store, rooms=st.rooms,
                              events=st.events, current_state=st.current_state, users=accounts.users,
                              visibility=visibility),
    )
    # -- end rooms area ------------------------------------------------------------

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

    # -- federation: keys, keyring, outbound client, inbound authentication, read handlers --
    stores = core.stores
    federation = build_federation_area(
        config=config.federation, reactor=reactor, clock=clock, db=db, server_name=config.server.server_name,
        signing_key=signing_key, events=stores.events, state=stores.state, current_state=stores.current_state,
        rooms=stores.rooms, aliases=stores.aliases, profiles=stores.profiles,
    )

    return MasterComponents(config=config, clock=clock, db=db, core=core, accounts=accounts, auth=auth,
                            rooms=rooms, media=media, replication=replication, federation=federation)


def build_servlet_groups(config: RootConfig, c: MasterComponents) -> dict[str, list[RestServlet]]:
    """The servlets behind each http resource name, for the master role."""
    client: list[RestServlet] = [
        VersionsServlet(),
        CapabilitiesServlet(config.server, config.registration, c.auth),
        ClientWellKnownServlet(config.server),
    ]
    if config.server.serve_server_wellknown:
        client.append(ServerWellKnownServlet(config.server))
    # -- rooms area servlets -------------------------------------------------------
    client.extend(build_rooms_servlets(c.auth, c.rooms, room_creation=c.core.room_creation, send=c.core.send))

    # -- media repository: /_matrix/media/* in "media", /_matrix/client/v1/media/* in "client" --
    media: list[RestServlet] = []
    if config.media.enable_media_repo:
        media_servlets = build_media_servlets(c.auth, config.media, c.media.repository, c.media.thumbnails)
        media.extend(media_servlets.media)
        client.extend(media_servlets.client)

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
        PublicRoomsServlet(fed.authenticator, c.rooms.directory, config.federation.allow_public_rooms),
    ]
    keys: list[RestServlet] = [LocalKeyServlet(fed.local_keys), RemoteKeyServlet(fed.notary)]

    return {
        "client": client,
        "federation": federation,
        "media": media,
        "keys": keys,
        "replication": [],
    }
