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
from matrixd.http.server import RestServlet
from matrixd.rest.client.capabilities import CapabilitiesServlet
from matrixd.rest.client.versions import VersionsServlet
from matrixd.rest.client.wellknown import ClientWellKnownServlet, ServerWellKnownServlet
from matrixd.storage.accounts import DeviceStore, TokenStore, UserStore
from matrixd.storage.database import Database
from matrixd.util.clock import Clock

# --- sync area imports (h/sync) ---
from matrixd.events.event import Event
from matrixd.handlers.account_data import AccountDataHandler
from matrixd.handlers.presence import PresenceHandler
from matrixd.handlers.push_rules import PushRulesHandler
from matrixd.handlers.read_markers import ReadMarkersHandler
from matrixd.handlers.receipts import ReceiptsHandler
from matrixd.handlers.sync import AllVisible, FilterHandler, SyncHandler, SyncStores
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


async def build_sync_area(config: RootConfig, clock: Clock, db: Database, core: RoomCore) -> SyncArea:
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
        visibility=AllVisible(),
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


@attrs.define
class MasterComponents:
    config: RootConfig
    clock: Clock
    db: Database
    core: RoomCore
    accounts: AccountStores
    auth: AccessTokenAuth
    sync: SyncArea  # sync area (h/sync)


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
    # --- sync area (h/sync) ---
    sync = await build_sync_area(config, clock, db, core)
    # --- end sync area ---
    return MasterComponents(config=config, clock=clock, db=db, core=core, accounts=accounts, auth=auth, sync=sync)


def build_servlet_groups(config: RootConfig, c: MasterComponents) -> dict[str, list[RestServlet]]:
    """The servlets behind each http resource name, for the master role."""
    client: list[RestServlet] = [
        VersionsServlet(),
        CapabilitiesServlet(config.server, config.registration, c.auth),
        ClientWellKnownServlet(config.server),
    ]
    if config.server.serve_server_wellknown:
        client.append(ServerWellKnownServlet(config.server))
    # --- sync area servlets (h/sync) ---
    sa = c.sync
    client += [
        SyncServlet(c.auth, sa.sync, sa.filters, c.clock),
        CreateFilterServlet(c.auth, sa.filters),
        GetFilterServlet(c.auth, sa.filters),
        TypingServlet(c.auth, sa.typing),
        ReceiptServlet(c.auth, sa.receipts),
        ReadMarkersServlet(c.auth, sa.read_markers),
        PresenceStatusServlet(c.auth, sa.presence),
        AccountDataServlet(c.auth, sa.account_data),
        RoomAccountDataServlet(c.auth, sa.account_data),
        TagListServlet(c.auth, sa.account_data),
        TagServlet(c.auth, sa.account_data),
        PushRulesServlet(c.auth, sa.push_rules),
        GlobalPushRulesServlet(c.auth, sa.push_rules),
        PushRuleServlet(c.auth, sa.push_rules),
    ]
    # --- end sync area servlets ---
    return {
        "client": client,
        "federation": [],
        "media": [],
        "keys": [],
        "replication": [],
    }
