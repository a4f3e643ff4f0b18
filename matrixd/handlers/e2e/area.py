"""Everything end-to-end encryption adds to a master process, built in one place."""

from __future__ import annotations

from typing import Optional

import attrs

from matrixd.handlers.e2e.backup import KeyBackupHandler
from matrixd.handlers.e2e.cross_signing import CrossSigningHandler
from matrixd.handlers.e2e.device_lists import DeviceListChanges, DeviceListUpdater
from matrixd.handlers.e2e.keys import E2EKeysHandler
from matrixd.handlers.e2e.reauth import PasswordReauth, Reauthenticator
from matrixd.handlers.e2e.remote import NoFederationE2EKeys, RemoteE2EKeys
from matrixd.handlers.e2e.sync_source import E2ESyncSource
from matrixd.handlers.e2e.to_device import ToDeviceHandler
from matrixd.storage.accounts import DeviceStore, UserStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.database import Database
from matrixd.storage.device_lists import DeviceListStore, create_device_list_id_generator
from matrixd.storage.e2e_keys import E2EKeyStore
from matrixd.storage.room_keys import RoomKeyStore
from matrixd.storage.to_device import ToDeviceStore, create_to_device_id_generator
from matrixd.streams.notifier import Notifier
from matrixd.util.clock import Clock


@attrs.define
class E2EStores:
    keys: E2EKeyStore
    device_lists: DeviceListStore
    to_device: ToDeviceStore
    room_keys: RoomKeyStore


@attrs.define
class E2EArea:
    stores: E2EStores
    device_lists: DeviceListUpdater
    changes: DeviceListChanges
    keys: E2EKeysHandler
    cross_signing: CrossSigningHandler
    to_device: ToDeviceHandler
    backup: KeyBackupHandler
    sync_source: E2ESyncSource


async def build_e2e_area(
    *,
    clock: Clock,
    db: Database,
    server_name: str,
    notifier: Notifier,
    current_state: CurrentStateStore,
    users: UserStore,
    devices: DeviceStore,
    remote: Optional[RemoteE2EKeys] = None,
    reauth: Optional[Reauthenticator] = None,
) -> E2EArea:
    stores = E2EStores(E2EKeyStore(db, clock), DeviceListStore(db, clock), ToDeviceStore(db, clock),
                       RoomKeyStore(db, clock))
    device_lists = DeviceListUpdater(
        store=stores.device_lists, keys=stores.keys, to_device=stores.to_device,
        stream_ids=await create_device_list_id_generator(db), notifier=notifier,
    )
    changes = DeviceListChanges(store=stores.device_lists, current_state=current_state)
    keys = E2EKeysHandler(server_name=server_name, store=stores.keys, device_lists=device_lists, changes=changes,
                          remote=remote or NoFederationE2EKeys())
    cross_signing = CrossSigningHandler(server_name=server_name, store=stores.keys, device_lists=device_lists,
                                        reauth=reauth or PasswordReauth(clock, users, server_name),
                                        remote=remote)
    to_device = ToDeviceHandler(server_name=server_name, store=stores.to_device, devices=devices,
                                stream_ids=await create_to_device_id_generator(db), notifier=notifier)
    sync_source = E2ESyncSource(keys=stores.keys, to_device=to_device, device_lists=device_lists, changes=changes)
    return E2EArea(stores=stores, device_lists=device_lists, changes=changes, keys=keys,
                   cross_signing=cross_signing, to_device=to_device, backup=KeyBackupHandler(stores.room_keys),
                   sync_source=sync_source)
