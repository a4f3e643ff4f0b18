"""Registry entries of the end-to-end encryption streams: ``to_device`` and ``device_lists``.

Both are database-backed and written by the master.  ``to_device`` rows are
the inbox rows still held (a delivered and acknowledged message is deleted,
and ids used only by messages for other servers have no inbox row: the
position covers those gaps).  ``device_lists`` rows wake the users who may
see the change: the one it is ``visible_to``, else the changed user and
everyone sharing a room with them (looked up when the page is read).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

import attrs

from matrixd.replication.streams import ReplicationStream, StreamPage
from matrixd.storage.device_lists import DeviceListStore
from matrixd.storage.to_device import ToDeviceStore
from matrixd.streams.token import StreamName

TO_DEVICE = "to_device"
DEVICE_LISTS = "device_lists"

Token = Optional[Callable[[], int]]


@attrs.frozen(slots=True)
class ToDeviceStreamRow:
    """A message is waiting in a local device's inbox."""

    user_id: str
    device_id: str


@attrs.frozen(slots=True)
class DeviceListsStreamRow:
    """A user's device list changed; ``wake`` are the users to wake."""

    user_id: str
    device_id: Optional[str]
    wake: tuple[str, ...] = ()


def whole_token_page(rows: list[tuple[int, Any]], to_token: int, limit: int, fetched: int) -> StreamPage[Any]:
    """A page of rows where one id may carry several rows: a page cut by ``limit`` ends before its last id."""
    if fetched < limit or not rows:
        return StreamPage(rows, to_token, False)
    last = rows[-1][0]
    whole = [(t, r) for t, r in rows if t < last]
    if whole:
        return StreamPage(whole, whole[-1][0], True)
    # One id with more rows than the page holds: return them all rather than loop.
    return StreamPage(rows, last, True)


def to_device_stream(store: ToDeviceStore, *, current_token: Token = None) -> ReplicationStream[ToDeviceStreamRow]:
    async def get_updates(from_token: int, to_token: int, limit: int) -> StreamPage[ToDeviceStreamRow]:
        rows = await store.get_inbox_rows(from_token, to_token, limit)
        out = [(sid, ToDeviceStreamRow(user_id, device_id)) for sid, user_id, device_id in rows]
        return whole_token_page(out, to_token, limit, len(rows))

    return ReplicationStream(
        name=TO_DEVICE, row_type=ToDeviceStreamRow, get_updates=get_updates, current_token=current_token,
        wake_keys=lambda row: (row.user_id,), notifier_stream=StreamName.TO_DEVICE,
    )


def device_lists_stream(
    store: DeviceListStore, *, current_token: Token = None
) -> ReplicationStream[DeviceListsStreamRow]:
    async def get_updates(from_token: int, to_token: int, limit: int) -> StreamPage[DeviceListsStreamRow]:
        rows = await store.get_rows(from_token, to_token, limit)
        sharing: dict[str, set[str]] = {}
        out = []
        for r in rows:
            if r.visible_to is not None:
                wake: Iterable[str] = (r.visible_to,)
            else:
                if r.user_id not in sharing:
                    sharing[r.user_id] = await store.get_users_sharing_a_room(r.user_id) | {r.user_id}
                wake = sharing[r.user_id]
            out.append((r.stream_id, DeviceListsStreamRow(r.user_id, r.device_id, tuple(sorted(wake)))))
        return whole_token_page(out, to_token, limit, len(rows))

    return ReplicationStream(
        name=DEVICE_LISTS, row_type=DeviceListsStreamRow, get_updates=get_updates, current_token=current_token,
        wake_keys=lambda row: row.wake, notifier_stream=StreamName.DEVICE_LISTS,
    )


def e2e_streams(to_device: ToDeviceStore, device_lists: DeviceListStore, *, to_device_token: Token = None,
                device_lists_token: Token = None) -> list[ReplicationStream[Any]]:
    """Both entries (tokens given on the master only)."""
    return [to_device_stream(to_device, current_token=to_device_token),
            device_lists_stream(device_lists, current_token=device_lists_token)]
