"""Device list tracking: writing the device_lists stream and telling a user whose
device lists changed, or who they stopped sharing rooms with, between two sync tokens.

Writers of anything ``/keys/query`` shows (device keys, devices, cross-signing
keys and signatures) go through :meth:`DeviceListUpdater.write_change`, which
allocates the stream id, runs the write, and then wakes the users who share a
room with the changed user (and the user). The account code calls
:meth:`DeviceListUpdater.notify_device_change` when it creates a device and
:meth:`DeviceListUpdater.on_devices_deleted` after deleting devices.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Iterable, Optional, Sequence, TypeVar

from matrixd.handlers.sync.announcer import StreamAnnouncer
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.device_lists import DeviceListStore
from matrixd.storage.e2e_keys import E2EKeyStore
from matrixd.storage.streams import StreamIdGenerator
from matrixd.storage.to_device import ToDeviceStore
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName, StreamToken

R = TypeVar("R")


class DeviceListUpdater:
    def __init__(self, *, store: DeviceListStore, keys: E2EKeyStore, to_device: ToDeviceStore,
                 stream_ids: StreamIdGenerator, notifier: Notifier) -> None:
        self._store = store
        self._keys = keys
        self._to_device = to_device
        self._ids = stream_ids
        self._announcer = StreamAnnouncer.for_id_generator(notifier, StreamName.DEVICE_LISTS, stream_ids)

    def current_position(self) -> int:
        return self._announcer.current_position()

    def set_publisher(self, notify: Callable[[], None]) -> None:
        """Announce writes through the replication publisher (``notify`` is its notify for this stream)."""
        self._announcer.publish_through(notify)

    async def write_change(self, user_id: str, write: Callable[[int], Awaitable[R]],
                           wake_only: Optional[str] = None) -> R:
        """Run ``write(stream_id)`` (which must record the device_lists row in its transaction),
        then wake whoever may see the change: ``wake_only`` if given, else the users sharing a
        room with ``user_id`` and ``user_id`` itself."""
        allocated: Optional[int] = None
        try:
            with self._ids.get_next() as stream_id:
                allocated = stream_id
                result = await write(stream_id)
        except BaseException:
            if allocated is not None:
                # The id finished (rolled back): release announcements held behind it.
                self._announcer.announce(allocated, ())
            raise
        if wake_only is not None:
            keys = {wake_only}
        else:
            keys = await self._store.get_users_sharing_a_room(user_id) | {user_id}
        self._announcer.announce(stream_id, keys)
        return result

    async def notify_device_change(self, user_id: str, device_ids: Iterable[str]) -> None:
        """Record that these devices of a local user were added, deleted or changed keys."""
        ids = sorted(set(device_ids))
        if ids:
            await self.write_change(user_id, lambda sid: self._store.add_changes(sid, user_id, ids))

    async def on_devices_deleted(self, user_id: str, device_ids: Sequence[str]) -> None:
        """After devices were deleted: drop their keys and inboxes and record the change.

        Matches the accounts code's device deletion callback signature.
        """
        ids = sorted(set(device_ids))
        if not ids:
            return
        await self._keys.delete_device_keys(user_id, ids)
        await self._to_device.delete_inboxes(user_id, ids)
        await self.notify_device_change(user_id, ids)


class DeviceListChanges:
    """Who a user should re-query (``changed``) or stop tracking (``left``) between two tokens."""

    def __init__(self, *, store: DeviceListStore, current_state: CurrentStateStore) -> None:
        self._store = store
        self._current = current_state

    async def get_changes(self, user_id: str, from_token: StreamToken,
                          to_token: StreamToken) -> tuple[set[str], set[str]]:
        """``(changed, left)`` for ``user_id`` between the tokens.

        ``changed``: users now sharing a room with ``user_id`` (or ``user_id``
        itself) whose devices or cross-signing keys changed in the device_lists
        window, and users who started sharing a room with ``user_id`` in the
        events window (either side joined). ``left``: users who stopped
        sharing any room with ``user_id`` in the events window. "Now" is the
        current room state, which a sync computing up to the present agrees with.
        """
        # Who shares a room with the user is only needed when something changed: most
        # woken syncs (a message arrived) have neither device changes nor membership deltas.
        shared_cache: list[set[str]] = []

        async def shared() -> set[str]:
            if not shared_cache:
                shared_cache.append(set(await self._store.get_users_sharing_a_room(user_id)))
            return shared_cache[0]

        changed: set[str] = set()
        left: set[str] = set()
        if to_token.device_lists > from_token.device_lists:
            users = await self._store.get_changed_users(from_token.device_lists, to_token.device_lists, user_id)
            if users:
                shared_now = await shared()
                changed = {u for u in users if u in shared_now or u == user_id}
        if to_token.events > from_token.events and not self._current.no_member_changes_between(
            from_token.events, to_token.events
        ):
            joined_rooms = sorted(await self._current.get_rooms_for_user(user_id))
            deltas = await self._store.get_membership_changes(user_id, joined_rooms, from_token.events,
                                                              to_token.events)
            own_joined = {d.room_id for d in deltas if d.user_id == user_id and d.joined}
            own_left = {d.room_id for d in deltas if d.user_id == user_id and d.left}
            newly: set[str] = set()
            gone: set[str] = set()
            if own_joined or own_left:
                members = await self._store.get_joined_members(sorted(own_joined | own_left))
                for room_id in own_joined:
                    newly |= members[room_id]
                for room_id in own_left:
                    gone |= members[room_id]
            for d in deltas:
                if d.user_id == user_id:
                    continue
                if d.joined:
                    newly.add(d.user_id)
                if d.left:
                    gone.add(d.user_id)
            newly.discard(user_id)
            if newly or gone:
                shared_now = await shared()
                changed |= newly & shared_now
                left = gone - shared_now
        left.discard(user_id)
        left -= changed
        return changed, left
