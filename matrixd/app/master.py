"""The master role's components: built once, after the database schema is ready.

Each feature area builds its stores and handlers here with explicit arguments
and contributes servlets to the resource groups; nothing reaches for a global.
"""

from __future__ import annotations

from typing import Any

import attrs
from signedjson.types import SigningKey

from matrixd.app.background import BackgroundJobRunner
from matrixd.app.core import RoomCore, build_room_core
from matrixd.appservice.area import AppServiceArea, build_app_service_area
from matrixd.appservice.ephemeral import EphemeralFollower
from matrixd.rest.client.appservice import AppServicePingServlet
from matrixd.rest.client.thirdparty import thirdparty_servlets
from matrixd.config import RootConfig
from matrixd.events.room_versions import get_room_version
from matrixd.config.ratelimiting import RatelimitSettings
from matrixd.handlers.accounts.account import AccountHandler
from matrixd.handlers.accounts.credentials import PasswordAuthenticator
from matrixd.handlers.accounts.devices import DeviceActivityRecorder, DeviceHandler
from matrixd.handlers.accounts.login import LoginHandler
from matrixd.handlers.accounts.passwords import PasswordHasher
from matrixd.handlers.accounts.profile import ProfileHandler
from matrixd.handlers.accounts.register import RegistrationHandler
from matrixd.handlers.accounts.registration_tokens import RegistrationTokenAdmin
from matrixd.handlers.accounts.sessions import SessionHandler
from matrixd.handlers.accounts.shared_secret import SharedSecretRegistration
from matrixd.handlers.accounts.uia import (
    DUMMY,
    PASSWORD,
    REGISTRATION_TOKEN,
    DummyStage,
    PasswordStage,
    Reauthentication,
    RegistrationTokenStage,
    UserInteractiveAuth,
)
from matrixd.handlers.accounts.user_directory import UserDirectoryHandler
from matrixd.federation.area import FederationArea, build_federation_area
from matrixd.federation.flow_area import FederationFlowArea, build_federation_flow_area
from matrixd.federation.inbound.txn_store import ReceivedTransactionStore
from matrixd.rest.federation.flow import federation_flow_servlets
from matrixd.federation.sender.area import (
    FederationOutArea,
    LateRemoteE2EKeys,
    SyncHandlers,
    build_federation_out_area,
)
from matrixd.federation.sender.backoff import retry_policy_from_config
from matrixd.handlers.admin.area import AdminArea
from matrixd.handlers.admin.deletion import BATCH_TARGET_S, RoomDeletionHandler
from matrixd.handlers.admin.media import MediaAdminHandler
from matrixd.handlers.admin.media_cleanup import MediaCleanup
from matrixd.handlers.admin.misc import AdminMiscHandler
from matrixd.handlers.admin.stats import CurrentStateSize
from matrixd.handlers.txn_expiry import TransactionIdExpiry, TxnIdTable
from matrixd.handlers.admin.notices import ServerNoticesHandler
from matrixd.handlers.admin.rooms import RoomAdminHandler
from matrixd.handlers.admin.users import UserAdminHandler
from matrixd.rest.admin.media import media_admin_servlets
from matrixd.rest.admin.misc import SendServerNoticeServlet, misc_admin_servlets
from matrixd.rest.admin.rooms import room_admin_servlets
from matrixd.rest.admin.users import user_admin_servlets
from matrixd.storage.admin import AdminStore
from matrixd.storage.media_cleanup import MediaCleanupStore
from matrixd.handlers.ratelimit import RatelimitOverrides
from matrixd.handlers.auth import AccessTokenAuth
from matrixd.handlers.ratelimit import RateLimitConfig, Ratelimiter
from matrixd.handlers.e2e.area import E2EArea, build_e2e_area
from matrixd.http.auth import Auth
from matrixd.http.server import RestServlet
from matrixd.media.area import MediaArea, build_media_area
from matrixd.federation.media_client import FederationMediaFetcher
from matrixd.rest.admin import AdminAuth
from matrixd.rest.admin.register import SharedSecretRegisterServlet
from matrixd.rest.admin.registration_tokens import (
    NewRegistrationTokenServlet,
    RegistrationTokenServlet,
    RegistrationTokensServlet,
)
from matrixd.rest.client.account import (
    DeactivateServlet,
    PasswordServlet,
    ThreepidAddServlet,
    ThreepidRemoveServlet,
    ThreepidRequestTokenServlet,
    ThreepidServlet,
    WhoamiServlet,
)
from matrixd.rest.client.capabilities import CapabilitiesServlet
from matrixd.rest.client.devices import DeleteDevicesServlet, DeviceServlet, DevicesServlet
from matrixd.rest.client.login import LoginServlet, LoginTokenServlet, RefreshServlet
from matrixd.rest.client.logout import LogoutAllServlet, LogoutServlet
from matrixd.rest.client.profile import ProfileFieldServlet, ProfileServlet
from matrixd.rest.client.register import (
    RegisterAvailableServlet,
    RegisterServlet,
    RegistrationTokenValidityServlet,
)
from matrixd.rest.client.user_directory import UserDirectorySearchServlet
from matrixd.handlers.rooms.access import RoomAccessChecker
from matrixd.handlers.rooms.aliases import RoomAliasHandler
from matrixd.handlers.rooms.area import RoomsArea
from matrixd.handlers.rooms.context import EventContextHandler
from matrixd.handlers.rooms.directory import RoomDirectoryHandler
from matrixd.handlers.rooms.hierarchy import SpaceHierarchyHandler
from matrixd.handlers.rooms.space_summary import SpaceRoomSummaries
from matrixd.federation.hierarchy_client import FederationHierarchyClient
from matrixd.rest.client.hierarchy import SpaceHierarchyServlet
from matrixd.handlers.rooms.members import RoomMembersHandler
from matrixd.handlers.rooms.membership_requests import MembershipRatelimits, MembershipRequestHandler
from matrixd.handlers.rooms.messages import PaginationHandler
from matrixd.handlers.rooms.report import ReportHandler
from matrixd.handlers.rooms.serialize import ClientEventSerializer
from matrixd.handlers.rooms.state import RoomStateHandler
from matrixd.handlers.rooms.timeline import TimelineWalker
from matrixd.handlers.rooms.upgrade import RoomUpgradeHandler
from matrixd.handlers.visibility import VisibilityFilter
from matrixd.replication.roles import EVENT_STATE_GROUPS_CACHE, MasterReplication, build_master_replication
from matrixd.app.roles.master_side import federation_sender_for_master, register_federation_transaction_endpoint
from matrixd.app.roles.master_side import build_write_endpoints, publish_e2e_streams, publish_sync_streams
from matrixd.replication.http.server import ReplicationEndpoints, build_replication_servlets
from matrixd.rest.client.rooms import build_rooms_servlets
from matrixd.rest.client.keys import e2e_key_servlets
from matrixd.rest.client.room_keys import room_keys_servlets
from matrixd.rest.client.to_device import SendToDeviceServlet
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
from matrixd.rest.client.openid import OpenIdRequestTokenServlet
from matrixd.rest.federation.hierarchy import HierarchyServlet
from matrixd.rest.federation.openid import OpenIdUserInfoServlet
from matrixd.rest.federation.user_devices import UserDevicesServlet
from matrixd.rest.federation.user_keys import UserKeysClaimServlet, UserKeysQueryServlet
from matrixd.rest.key.query import RemoteKeyServlet
from matrixd.rest.key.server import LocalKeyServlet
from matrixd.rest.media import build_media_servlets
from matrixd.rest.federation.media import federation_media_servlets
from matrixd.storage.accounts import DeviceStore, TokenStore, UserStore
from matrixd.storage.database import Database
from matrixd.storage.login_tokens import LoginTokenStore
from matrixd.storage.registration_tokens import RegistrationTokenStore
from matrixd.storage.uia import UiaSessionStore
from matrixd.storage.user_directory import UserDirectoryStore
from matrixd.storage.directory import PublicRoomsStore
from matrixd.storage.reports import ReportStore
from matrixd.storage.state_lookup import StateEntryStore
from matrixd.storage.visibility import VisibilityStore
from matrixd.types import JsonDict, Requester
from matrixd.util.clock import Clock

# --- sync area imports (h/sync) ---
from typing import Optional
from matrixd.events.event import Event
from matrixd.handlers.account_data import AccountDataHandler
from matrixd.handlers.presence import PresenceHandler
from matrixd.handlers.push_rules import PushRulesHandler
from matrixd.handlers.read_markers import ReadMarkersHandler
from matrixd.handlers.receipts import ReceiptsHandler
from matrixd.handlers.sync.filters import FilterHandler
from matrixd.handlers.sync.handler import SyncHandler, SyncStores
from matrixd.handlers.sync.types import EventVisibility
from matrixd.handlers.e2e.sync_source import E2ESyncSource
from matrixd.handlers.typing import TypingHandler
from matrixd.rest.client.account_data import AccountDataServlet, RoomAccountDataServlet
from matrixd.rest.client.filter import CreateFilterServlet, GetFilterServlet
from matrixd.rest.client.presence import PresenceStatusServlet
from matrixd.rest.client.push_rules import GlobalPushRulesServlet, PushRuleServlet, PushRulesServlet
from matrixd.rest.client.read_markers import ReadMarkersServlet
from matrixd.rest.client.receipts import ReceiptServlet
from matrixd.rest.client.sync import SyncServlet
from matrixd.rest.client.tags import TagListServlet, TagServlet
from matrixd.rest.client.typing import TypingServlet
from matrixd.storage.account_data import AccountDataStore
from matrixd.storage.filters import FilterStore
from matrixd.storage.presence import PresenceStore
from matrixd.storage.push_rules import PushRulesStore
from matrixd.storage.receipts import ReceiptStore
from matrixd.streams.token import StreamName
# --- end sync area imports ---

# --- push area imports (h/push) ---
from matrixd.handlers.push_rules import PushRuleEditor
from matrixd.push.actions import PushActionGenerator
from matrixd.push.counts import UnreadCounter
from matrixd.push.gateway import HttpPushGatewayClient
from matrixd.push.notifications import NotificationsHandler
from matrixd.push.pool import PusherPool
from matrixd.push.pushers import PushersHandler
from matrixd.rest.client.notifications import NotificationsServlet
from matrixd.rest.client.push_rules import PushRuleWriteServlet
from matrixd.rest.client.pushers import PushersServlet, SetPusherServlet
from matrixd.storage.event_push_actions import EventPushActionsStore
from matrixd.storage.pushers import PusherStore
# --- end push area imports ---


@attrs.define
class AccountStores:
    users: UserStore
    devices: DeviceStore
    tokens: TokenStore


# --- sync area (h/sync): /sync, filters, typing, receipts, read markers, account data, presence, push rules ---
@attrs.define
class SyncArea:
    stores: SyncStores
    filters: FilterHandler
    sync: SyncHandler
    typing: TypingHandler
    receipts: ReceiptsHandler
    read_markers: ReadMarkersHandler
    account_data: AccountDataHandler
    presence: PresenceHandler
    push_rules: PushRulesHandler


async def build_sync_area(
    config: RootConfig, clock: Clock, db: Database, core: RoomCore, visibility: EventVisibility,
    e2e: Optional[E2ESyncSource] = None,
) -> SyncArea:
    """The sync area's stores and handlers; announces each stream's starting position."""
    notifier, cs = core.notifier, core.stores.current_state
    stores = SyncStores(
        events=core.stores.events,
        state_groups=core.stores.state,
        current_state=cs,
        forgotten=core.stores.forgotten,
        receipts=ReceiptStore(db, clock, await ReceiptStore.create_stream_ids(db)),
        account_data=AccountDataStore(db, clock, await AccountDataStore.create_stream_ids(db)),
        presence=PresenceStore(db, clock, await PresenceStore.create_stream_ids(db)),
        push_rules=PushRulesStore(db, clock, await PushRulesStore.create_stream_ids(db)),
        txn_ids=core.stores.txn_ids,
        partial_state=core.stores.partial_state,
    )
    notifier.set_position(StreamName.RECEIPTS, stores.receipts.get_current_token())
    notifier.set_position(StreamName.ACCOUNT_DATA, stores.account_data.get_current_token())
    notifier.set_position(StreamName.PUSH_RULES, stores.push_rules.get_current_token())
    push_rules = PushRulesHandler(stores.push_rules)
    account_data = AccountDataHandler(store=stores.account_data, notifier=notifier, push_rules=push_rules)
    receipts = ReceiptsHandler(
        clock=clock, store=stores.receipts, events=core.stores.events, current_state=cs, notifier=notifier,
        account_data=account_data,
    )
    typing = TypingHandler(clock=clock, notifier=notifier, current_state=cs)
    presence = PresenceHandler(
        clock=clock, store=stores.presence, notifier=notifier, current_state=cs,
        server_name=config.server.server_name, enabled=config.presence.enabled,
    )
    await presence.start()

    def on_persisted(event: Event) -> None:
        presence.on_event_persisted(event.sender)

    core.persister.add_persisted_callback(on_persisted)
    sync = SyncHandler(
        clock=clock, notifier=notifier, stores=stores, typing=typing, presence=presence, push_rules=push_rules,
        visibility=visibility, e2e=e2e,
    )
    return SyncArea(
        stores=stores,
        filters=FilterHandler(FilterStore(db, clock)),
        sync=sync,
        typing=typing,
        receipts=receipts,
        read_markers=ReadMarkersHandler(receipts=receipts, account_data=account_data),
        account_data=account_data,
        presence=presence,
        push_rules=push_rules,
    )
# --- end sync area ---


# --- push area (h/push): rule evaluation, unread counts, rule editing, notifications, pushers ---
@attrs.define
class PushArea:
    actions_store: EventPushActionsStore
    pusher_store: PusherStore
    generator: PushActionGenerator
    counts: UnreadCounter
    editor: PushRuleEditor
    notifications: NotificationsHandler
    pool: PusherPool
    pushers: PushersHandler


async def build_push_area(
    config: RootConfig, reactor: Any, clock: Clock, db: Database, core: RoomCore, sync: SyncArea,
    serializer: ClientEventSerializer,
) -> PushArea:
    """The push area; its generator stores each event's push actions before the event is announced."""
    actions_store = EventPushActionsStore(db, clock)
    counts = UnreadCounter(actions_store)
    generator = PushActionGenerator(
        server_name=config.server.server_name, current_state=core.stores.current_state,
        rules_store=sync.stores.push_rules, actions_store=actions_store,
    )
    editor = PushRuleEditor(sync.stores.push_rules, sync.push_rules, core.notifier)
    editor.add_change_callback(generator.invalidate_user)
    pusher_store = PusherStore(db, clock, await PusherStore.create_ids(db))
    pool = PusherPool(clock=clock, store=pusher_store, current_state=core.stores.current_state,
                      client=HttpPushGatewayClient(reactor), badge_count=counts.get_badge_count)
    await pool.start()
    generator.add_listener(pool.on_push_actions)
    sync.sync.set_unread_counts(counts)
    return PushArea(
        actions_store=actions_store, pusher_store=pusher_store, generator=generator, counts=counts, editor=editor,
        notifications=NotificationsHandler(actions_store, core.stores.events, serializer), pool=pool,
        pushers=PushersHandler(pusher_store, pool, core.stores.stream_ids.get_current_token),
    )
# --- end push area ---


@attrs.define
class AccountArea:
    """Registration, login, sessions, devices, account management, profiles, user directory."""

    uia_sessions: UiaSessionStore
    login_tokens: LoginTokenStore
    registration_tokens: RegistrationTokenStore
    user_directory_store: UserDirectoryStore
    hasher: PasswordHasher
    uia: UserInteractiveAuth
    reauth: Reauthentication
    devices: DeviceHandler
    activity: DeviceActivityRecorder
    sessions: SessionHandler
    registration: RegistrationHandler
    shared_secret: SharedSecretRegistration
    login: LoginHandler
    account: AccountHandler
    profile: ProfileHandler
    user_directory: UserDirectoryHandler
    registration_token_admin: RegistrationTokenAdmin
    rc_token_validity: Ratelimiter


@attrs.define
class MasterComponents:
    config: RootConfig
    clock: Clock
    db: Database
    core: RoomCore
    accounts: AccountStores
    auth: AccessTokenAuth
    account_area: AccountArea
    rooms: RoomsArea
    media: MediaArea
    replication: MasterReplication
    e2e: E2EArea
    federation: FederationArea
    sync: SyncArea  # sync area (h/sync)
    internal: ReplicationEndpoints  # the write endpoints workers call (matrixd.replication.http)
    federation_out: FederationOutArea  # federation sending, EDUs, remote queries (h/fedout)
    federation_flow: FederationFlowArea  # inbound /send, membership over federation, backfill (h/fedflow)
    admin: AdminArea
    appservice: AppServiceArea
    push: PushArea  # push area (h/push)


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
    # The master marks and clears partial-state rooms through this one store: it keeps them in memory.
    await core.stores.partial_state.track_in_memory()
    # -- accounts: registration, login, tokens, devices, profiles, user directory --------------
    tokens = TokenStore(db, clock)
    accounts = AccountStores(UserStore(db, clock), DeviceStore(db, clock, tokens=tokens), tokens)
    account_area = _build_account_area(config, reactor, clock, db, core, accounts)
    auth = AccessTokenAuth(clock, accounts.users, accounts.tokens, activity=account_area.activity)
    # -- end accounts ------------------------------------------------------------------------

    # -- rooms area: visibility, room reads, directory, upgrades, reports --------
    rooms = build_rooms_area(config, clock, db, core, accounts.users)
    visibility = rooms.visibility
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
        events=core.stores.events, current_state=core.stores.current_state, state=core.stores.state,
        stream_ids=core.stores.stream_ids, backfill_ids=core.stores.backfill_ids,
        users=accounts.users, tokens=accounts.tokens, record_last_seen=accounts.devices.record_last_seen,
    )
    core.persister.set_announcer(lambda _events: replication.publisher.notify("events", "current_state_deltas"))

    # -- end-to-end encryption: keys, cross-signing, device lists, to-device, key backup --
    remote_e2e_keys = LateRemoteE2EKeys()  # bound to federation in the "federation out" block
    e2e = await build_e2e_area(
        clock=clock, db=db, server_name=config.server.server_name, notifier=core.notifier,
        current_state=core.stores.current_state, users=accounts.users, devices=accounts.devices,
        reauth=_UiaReauth(account_area.reauth), remote=remote_e2e_keys,
    )
    account_area.devices.add_creation_callback(e2e.device_lists.notify_device_change)
    account_area.devices.add_deletion_callback(e2e.device_lists.on_devices_deleted)

    # -- federation: keys, keyring, outbound client, inbound authentication, read handlers --
    stores = core.stores
    federation = build_federation_area(
        config=config.federation, reactor=reactor, clock=clock, db=db, server_name=config.server.server_name,
        signing_key=signing_key, events=stores.events, state=stores.state, current_state=stores.current_state,
        rooms=stores.rooms, aliases=stores.aliases, profiles=stores.profiles,
        ratelimit=config.ratelimiting.federation,
    )
    # -- federation media (h/fedmedia): remote media is fetched over federation --
    media.repository.set_remote(FederationMediaFetcher(federation.client, reactor, federation.https_agent))

    # --- sync area (h/sync) ---
    sync = await build_sync_area(config, clock, db, core, visibility, e2e.sync_source)
    # --- end sync area ---

    # -- workers: the sync and E2E streams on the replication registry; the internal write endpoints --
    publish_sync_streams(
        replication, receipts_store=sync.stores.receipts, account_data_store=sync.stores.account_data,
        presence_store=sync.stores.presence, push_rules_store=sync.stores.push_rules,
        current_state=core.stores.current_state, typing=sync.typing, receipts=sync.receipts,
        account_data=sync.account_data, presence=sync.presence,
    )
    publish_e2e_streams(replication, e2e)
    internal = build_write_endpoints(
        send=core.send, typing=sync.typing, receipts=sync.receipts, read_markers=sync.read_markers,
        presence=sync.presence, account_data=sync.account_data, to_device=e2e.to_device,
        event_ids=core.stores.stream_ids,
        receipts_store=sync.stores.receipts, account_data_store=sync.stores.account_data,
        presence_store=sync.stores.presence,
    )
    # -- end workers ---------------------------------------------------------------------------

    # -- federation out: the sender (queues, transactions, retries, catch-up), inbound EDUs,
    # -- remote device cache, outbound queries. The sender starts in start_master (send_federation).
    federation_out = build_federation_out_area(
        clock=clock, db=db, server_name=config.server.server_name, client=federation.client,
        notifier=core.notifier, events=stores.events, state=stores.state, event_stream_ids=stores.stream_ids,
        visibility=federation.visibility, device_lists=e2e.stores.device_lists, device_lists_position=e2e.device_lists,
        e2e_keys=e2e.stores.keys, to_device=e2e.stores.to_device,
        send_federation=config.federation.send_federation and config.workers.master_sends_federation,
        e2e=e2e, rooms=stores.rooms, current_state=stores.current_state,
        sync=SyncHandlers(typing=sync.typing, receipts=sync.receipts, receipt_store=sync.stores.receipts,
                          presence=sync.presence, presence_store=sync.stores.presence),
        retry_policy=retry_policy_from_config(config.federation.destination_retry),
        partial_state=core.stores.partial_state,
    )
    core.persister.add_persisted_callback(federation_out.sender.on_event_persisted)
    remote_e2e_keys.bind(federation_out.remote_e2e_keys)
    account_area.profile.set_remote_profiles(federation_out.profiles)
    rooms.aliases.set_remote_resolver(federation_out.aliases)
    rooms.directory.set_remote_directory(federation.remote_directory)
    rooms.hierarchy.set_remote(FederationHierarchyClient(federation.client, clock))
    # -- end federation out --------------------------------------------------------------------

    # -- federation event flow: inbound /send, membership over federation, backfill --
    # (with a federation_sender worker, what this flow hands the sender goes through the outbox stream)
    outbound = await federation_sender_for_master(config, clock, db, replication, federation_out.sender)
    federation_flow = build_federation_flow_area(core, federation, outbound, federation_out.edus)
    register_federation_transaction_endpoint(internal, federation_flow.transactions, stores.stream_ids)
    rooms.messages.set_backfill(federation_flow.backfiller)
    federation_flow.partial_state.set_groups_replaced_listener(
        lambda ids: replication.invalidator.invalidate(EVENT_STATE_GROUPS_CACHE, ids))  # workers' caches
    await federation_flow.partial_state.resume()  # rooms still joined with partial state
    rooms.members.set_full_state_waiter(federation_flow.partial_state.wait_for_full_state)
    rooms.state.set_full_state_waiter(federation_flow.partial_state.wait_for_full_state)
    core.membership.set_full_state_waiter(federation_flow.partial_state.wait_for_full_state)
    # -- end federation event flow --
    # -- server administration: /_synapse/admin users, rooms, purges, media; resumable jobs --
    admin_store = AdminStore(db, clock)
    admin_runner = BackgroundJobRunner(clock, admin_store)
    ratelimit_overrides = RatelimitOverrides(clock, admin_store)  # admin /override_ratelimit -> rc_message
    core.send.set_ratelimit_overrides(ratelimit_overrides)
    admin = AdminArea(
        store=admin_store, runner=admin_runner,
        users=UserAdminHandler(
            clock=clock, server_name=config.server.server_name, store=admin_store, users=accounts.users,
            tokens=accounts.tokens, profiles=stores.profiles, current_state=stores.current_state,
            account=account_area.account, sessions=account_area.sessions, hasher=account_area.hasher,
            devices=account_area.devices, profile=account_area.profile, ratelimit_overrides=ratelimit_overrides),
        rooms=RoomAdminHandler(
            server_name=config.server.server_name, store=admin_store, rooms=stores.rooms, events=stores.events,
            current_state=stores.current_state, membership=core.membership, send=core.send,
            serializer=rooms.serializer),
        deletion=RoomDeletionHandler(
            server_name=config.server.server_name, store=admin_store, runner=admin_runner, rooms=stores.rooms,
            aliases=stores.aliases, events=stores.events, current_state=stores.current_state,
            membership=core.membership, room_creation=core.room_creation, send=core.send,
            batch_target_s=BATCH_TARGET_S[db.name]),
        media=MediaAdminHandler(
            server_name=config.server.server_name, store=admin_store, media=media.store,
            cleanup=MediaCleanup(server_name=config.server.server_name, store=MediaCleanupStore(db),
                                 jobs=admin_store, storage=media.storage, runner=admin_runner)),
        misc=AdminMiscHandler(store=admin_store, events=stores.events,
                              on_backoff_reset=federation_out.sender.on_backoff_reset),
        notices=ServerNoticesHandler(
            server_name=config.server.server_name, config=config.server_notices, store=admin_store,
            users=accounts.users, profiles=stores.profiles, current_state=stores.current_state,
            room_creation=core.room_creation, send=core.send),
    )
    core.membership.set_room_blocks(admin_store)  # blocked rooms refuse joins, knocks, invites
    CurrentStateSize(clock, admin_store).start()  # matrixd_current_state_{rooms,events} gauges
    TransactionIdExpiry(clock, [  # client and federation transaction ids are kept a day
        TxnIdTable("event_txn_ids", core.stores.txn_ids.expire_before),
        TxnIdTable("to_device_txn_ids", e2e.stores.to_device.expire_txn_ids),
        TxnIdTable("received_transactions", ReceivedTransactionStore(db, clock).expire_before),
    ]).start()
    await admin_runner.resume_unfinished()
    # -- end server administration --

    # -- application services: registrations, as_token auth, transactions, queries --
    # Hooks into other areas: as_tokens in the access-token auth, exclusive user namespaces and
    # m.login.application_service in registration/login, alias queries and exclusive alias
    # namespaces in the alias handler; every persisted event wakes the transaction senders, and
    # the sync area's typing/receipt/presence streams feed services with receive_ephemeral.
    appservice = await build_app_service_area(
        services=config.app_service_config_files.registrations, reactor=reactor, clock=clock, db=db,
        server_name=config.server.server_name, users=accounts.users, devices=accounts.devices,
        profiles=core.stores.profiles, events=core.stores.events, current_state=core.stores.current_state,
        aliases=core.stores.aliases, stream_ids=core.stores.stream_ids,
    )
    if appservice.services:
        auth.set_app_service_auth(appservice.token_auth)
        account_area.registration.set_app_services(appservice.namespaces.is_user_exclusive,
                                                   appservice.namespaces.lookup_token)
        account_area.login.set_app_services(config.server.server_name, appservice.namespaces.lookup_token)
        rooms.aliases.set_app_services(appservice.queries)
        core.send.set_app_service_exemption(appservice.namespaces.is_rate_limit_exempt)
        core.membership.set_unknown_user_resolver(appservice.queries.provision_user)
        account_area.profile.set_unknown_user_resolver(appservice.queries.provision_user)
        rooms.membership_requests.set_app_service_exemption(appservice.namespaces.is_rate_limit_exempt)
        core.persister.add_persisted_callback(appservice.transactions.on_event_persisted)
        appservice.transactions.start()
        if any(s.receive_ephemeral or s.receive_to_device for s in appservice.services):
            appservice.ephemeral = EphemeralFollower(
                clock=clock, notifier=core.notifier, transactions=appservice.transactions, typing=sync.typing,
                receipts=sync.stores.receipts, presence=sync.stores.presence,
                to_device=e2e.stores.to_device if any(s.receive_to_device for s in appservice.services) else None,
            )
            appservice.ephemeral.start()
    # -- end application services --

    # --- push area (h/push): push actions are stored before an event is announced, so /sync's
    # unread counts include every event it shows; rule edits go out on the push_rules stream;
    # pushers die with their device and their user ---
    push = await build_push_area(config, reactor, clock, db, core, sync, rooms.serializer)
    core.persister.set_announcer(push.generator.wrap_announcer(
        lambda _events: replication.publisher.notify("events", "current_state_deltas")
    ))
    core.persister.set_pre_persist_hook(push.generator.prepare)
    push.editor.set_publisher(lambda: replication.publisher.notify("push_rules"))
    account_area.devices.add_deletion_callback(push.pushers.on_devices_deleted)
    account_area.account.add_deactivation_callback(push.pushers.on_user_deactivated)
    # --- end push area ---

    return MasterComponents(config=config, clock=clock, db=db, core=core, accounts=accounts, auth=auth,
                            account_area=account_area, rooms=rooms, media=media, replication=replication,
                            sync=sync, e2e=e2e, federation=federation, internal=internal,
                            federation_out=federation_out, federation_flow=federation_flow, admin=admin,
                            appservice=appservice, push=push)


def build_rooms_area(config: RootConfig, clock: Clock, db: Database, core: RoomCore, users: UserStore) -> RoomsArea:
    """The rooms area's stores and handlers (workers build the same for their reads)."""
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
        users=users, access=access, send=core.send,
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
                                       users=users),
        upgrade=RoomUpgradeHandler(server_name=config.server.server_name, rooms=st.rooms, aliases=st.aliases,
                                   events=st.events, current_state=st.current_state, profiles=st.profiles,
                                   creation=core.creation),
        reports=ReportHandler(server_name=config.server.server_name, reports=reports_store, rooms=st.rooms,
                              events=st.events, current_state=st.current_state, users=users,
                              visibility=visibility),
        hierarchy=SpaceHierarchyHandler(
            server_name=config.server.server_name, clock=clock, current_state=st.current_state,
            summaries=SpaceRoomSummaries(rooms=st.rooms, events=st.events, current_state=st.current_state),
        ),
    )
    return rooms


def build_sync_area_servlets(auth: Auth, sa: SyncArea, clock: Clock) -> list[RestServlet]:
    """The sync area's client servlets a sync worker serves as well as the master (filter uploads aside)."""
    return [
        SyncServlet(auth, sa.sync, sa.filters, clock),
        GetFilterServlet(auth, sa.filters),
        TypingServlet(auth, sa.typing),
        ReceiptServlet(auth, sa.receipts),
        ReadMarkersServlet(auth, sa.read_markers),
        PresenceStatusServlet(auth, sa.presence),
        AccountDataServlet(auth, sa.account_data),
        RoomAccountDataServlet(auth, sa.account_data),
        TagListServlet(auth, sa.account_data),
        TagServlet(auth, sa.account_data),
        PushRulesServlet(auth, sa.push_rules),
        GlobalPushRulesServlet(auth, sa.push_rules),
        PushRuleServlet(auth, sa.push_rules),
    ]


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
    # --- sync area servlets (h/sync) ---
    client.append(CreateFilterServlet(c.auth, c.sync.filters))
    client += build_sync_area_servlets(c.auth, c.sync, c.clock)
    # --- end sync area servlets ---
    # --- push area servlets (h/push) ---
    client += [
        PushRuleWriteServlet(c.auth, c.push.editor),
        NotificationsServlet(c.auth, c.push.notifications),
        PushersServlet(c.auth, c.push.pushers),
        SetPusherServlet(c.auth, c.push.pushers),
    ]
    # --- end push area servlets ---

    # accounts (client API and the /_synapse/admin endpoints of the area)
    client.extend(_account_servlets(config, c))
    # -- rooms area servlets -------------------------------------------------------
    client.extend(build_rooms_servlets(c.auth, c.rooms, room_creation=c.core.room_creation, send=c.core.send))

    # -- server administration: /_synapse/admin (on the client resource) --
    admin_auth = AdminAuth(c.auth, c.accounts.users)
    client.extend(user_admin_servlets(admin_auth, c.admin.users))
    client.extend(room_admin_servlets(admin_auth, c.admin.rooms, c.admin.deletion))
    client.extend(media_admin_servlets(admin_auth, c.admin.media, config.server.server_name))
    client.extend(misc_admin_servlets(admin_auth, c.admin.misc))
    client.append(SendServerNoticeServlet(admin_auth, c.admin.notices))

    # -- media repository: /_matrix/media/* in "media", /_matrix/client/v1/media/* in "client" --
    media: list[RestServlet] = []
    if config.media.enable_media_repo:
        media_servlets = build_media_servlets(c.auth, config.media, c.media.repository, c.media.thumbnails)
        media.extend(media_servlets.media)
        client.extend(media_servlets.client)

    # -- federation: the read-only federation API and the key server --
    federation, keys = build_federation_servlets(config, c.federation, c.rooms.directory)
    # -- federation out: inbound key/device queries, OpenID userinfo, space hierarchy --
    fed, fo = c.federation, c.federation_out
    federation += [
        UserDevicesServlet(fed.authenticator, fo.key_queries),
        UserKeysQueryServlet(fed.authenticator, fo.key_queries),
        UserKeysClaimServlet(fed.authenticator, fo.key_queries),
        OpenIdUserInfoServlet(fo.openid),
        HierarchyServlet(fed.authenticator, fed.acl, fo.hierarchy),
    ]
    client.append(SpaceHierarchyServlet(c.auth, c.rooms.hierarchy))  # its pagination state is per process
    client.append(OpenIdRequestTokenServlet(c.auth, fo.openid))
    # -- federation event flow: /send, make/send join, leave, knock, invite --
    federation.extend(federation_flow_servlets(fed, c.federation_flow))
    # -- federation media (h/fedmedia): /_matrix/federation/v1/media/{download,thumbnail} --
    if config.media.enable_media_repo:
        federation.extend(federation_media_servlets(fed.authenticator, c.media.repository, c.media.thumbnails))

    # -- application services: ping, third-party networks --
    client.append(AppServicePingServlet(c.auth, c.appservice.queries))
    client.extend(thirdparty_servlets(c.auth, c.appservice.queries))

    return {
        "client": client,
        "federation": federation,
        "media": media,
        "keys": keys,
        # -- workers: the internal HTTP API (/_matrixd/replication/...), shared-secret MACs --
        "replication": build_replication_servlets(
            c.internal, lambda: c.replication.registry, config.workers.worker_replication_secret, c.clock
        ),
    }


# -- accounts area wiring (used by the two blocks above) ------------------------------------


class _UiaReauth:
    """Cross-signing key replacement re-authenticates through the accounts area's UIA."""

    def __init__(self, reauth: Reauthentication) -> None:
        self._reauth = reauth

    async def require_auth(self, requester: Requester, body: JsonDict, operation: str) -> None:
        await self._reauth.require(requester, body, method="POST", operation=operation)


def _build_account_area(config: RootConfig, reactor: Any, clock: Clock, db: Database, core: RoomCore,
                        accounts: AccountStores) -> AccountArea:
    """The accounts area's stores and handlers (explicit arguments, built once)."""
    reg, rc = config.registration, config.ratelimiting
    server_name = config.server.server_name

    def limiter(s: RatelimitSettings) -> Ratelimiter:
        return Ratelimiter(clock, RateLimitConfig(s.per_second, s.burst_count))

    uia_sessions = UiaSessionStore(db, clock)
    login_tokens = LoginTokenStore(db, clock)
    registration_tokens = RegistrationTokenStore(db, clock)
    directory_store = UserDirectoryStore(db, clock)
    hasher = PasswordHasher(reactor, reg.bcrypt_rounds, reg.password)
    authenticator = PasswordAuthenticator(server_name, accounts.users, hasher, limiter(rc.login_failed_attempts))
    uia = UserInteractiveAuth(clock, uia_sessions, {
        DUMMY: DummyStage(),
        PASSWORD: PasswordStage(authenticator),
        REGISTRATION_TOKEN: RegistrationTokenStage(registration_tokens),
    }, hasher)
    reauth = Reauthentication(uia, accounts.users, hasher.enabled)
    devices = DeviceHandler(accounts.devices)
    activity = DeviceActivityRecorder(clock, accounts.devices)
    devices.add_deletion_callback(activity.forget_devices)
    sessions = SessionHandler(clock, reg, accounts.users, accounts.devices, accounts.tokens, devices)
    directory = UserDirectoryHandler(
        clock=clock, server_name=server_name, config=reg.user_directory, store=directory_store,
        current_state=core.stores.current_state, profiles=core.stores.profiles, users=accounts.users,
        event_stream_ids=core.stores.stream_ids,
    )
    core.persister.add_persisted_callback(directory.on_event_persisted)
    registration = RegistrationHandler(
        clock=clock, server_name=server_name, config=reg, users=accounts.users, tokens=accounts.tokens,
        profiles=core.stores.profiles, hasher=hasher, sessions=sessions, uia=uia,
        registration_tokens=registration_tokens, ratelimiter=limiter(rc.registration),
        on_profile_changed=directory.on_local_profile_changed,
    )
    login = LoginHandler(
        clock=clock, users=accounts.users, hasher=hasher, authenticator=authenticator, sessions=sessions,
        login_tokens=login_tokens, reauth=reauth, token_config=reg.login_via_existing_session,
        address_limiter=limiter(rc.login_address), account_limiter=limiter(rc.login_account),
        get_token_limiter=Ratelimiter(clock, RateLimitConfig(1 / 60, 1)),
    )
    account = AccountHandler(
        users=accounts.users, tokens=accounts.tokens, profiles=core.stores.profiles, login_tokens=login_tokens,
        current_state=core.stores.current_state, hasher=hasher, reauth=reauth, devices=devices,
        sessions=sessions, membership=core.membership, directory=directory,
    )
    profile = ProfileHandler(
        server_name=server_name, config=reg, users=accounts.users, profiles=core.stores.profiles,
        current_state=core.stores.current_state, creation=core.creation,
        on_changed=directory.on_local_profile_changed,
    )
    return AccountArea(
        uia_sessions=uia_sessions, login_tokens=login_tokens, registration_tokens=registration_tokens,
        user_directory_store=directory_store, hasher=hasher, uia=uia, reauth=reauth, devices=devices,
        activity=activity, sessions=sessions, registration=registration,
        shared_secret=SharedSecretRegistration(clock, reg.registration_shared_secret, registration, hasher,
                                               sessions),
        login=login, account=account, profile=profile, user_directory=directory,
        registration_token_admin=RegistrationTokenAdmin(clock, registration_tokens),
        rc_token_validity=Ratelimiter(clock, RateLimitConfig(0.1, 5)),
    )


def _account_servlets(config: RootConfig, c: MasterComponents) -> list[RestServlet]:
    a = c.account_area
    admin_auth = AdminAuth(c.auth, c.accounts.users)
    return [
        RegisterServlet(a.registration),
        RegisterAvailableServlet(a.registration),
        RegistrationTokenValidityServlet(config.registration, a.registration_tokens, a.rc_token_validity),
        LoginServlet(a.login),
        LoginTokenServlet(c.auth, a.login),
        RefreshServlet(a.sessions),
        LogoutServlet(c.auth, a.sessions),
        LogoutAllServlet(c.auth, a.sessions),
        WhoamiServlet(c.auth),
        PasswordServlet(c.auth, a.account),
        DeactivateServlet(c.auth, a.account),
        ThreepidServlet(c.auth),
        ThreepidAddServlet(c.auth),
        ThreepidRemoveServlet(c.auth),
        ThreepidRequestTokenServlet(),
        DevicesServlet(c.auth, a.devices),
        DeviceServlet(c.auth, a.devices, a.reauth),
        DeleteDevicesServlet(c.auth, a.devices, a.reauth),
        ProfileServlet(a.profile),
        ProfileFieldServlet(c.auth, a.profile),
        UserDirectorySearchServlet(c.auth, a.user_directory),
        SharedSecretRegisterServlet(a.shared_secret),
        RegistrationTokensServlet(admin_auth, a.registration_token_admin),
        NewRegistrationTokenServlet(admin_auth, a.registration_token_admin),
        RegistrationTokenServlet(admin_auth, a.registration_token_admin),
    ]


def build_federation_servlets(
    config: RootConfig, fed: FederationArea, directory: RoomDirectoryHandler
) -> tuple[list[RestServlet], list[RestServlet]]:
    """The ``federation`` and ``keys`` servlets (the master's, and a federation reader's)."""
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
        PublicRoomsServlet(fed.authenticator, directory, config.federation.allow_public_rooms),
    ]
    keys: list[RestServlet] = [LocalKeyServlet(fed.local_keys), RemoteKeyServlet(fed.notary)]
    return federation, keys
