"""EDUs kept in the database until the destination accepts them: to-device
messages (the e2e area's federation outbox) and device list / signing key
updates (our ``federation_device_list_outbox``).

Each source's ``take(destination, limit)`` returns the EDUs to put in the next
transaction and an acknowledgement to run once the destination accepted it;
a failed transaction leaves the rows where they are, so they survive restarts
and outages.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Mapping, Optional, Protocol, Sequence

from matrixd.storage.e2e_keys import E2EKeyStore, SignatureRow
from matrixd.storage.federation_sender import FederationSenderStore, PendingDeviceListChange
from matrixd.storage.to_device import ToDeviceStore
from matrixd.types import JsonDict

Ack = Callable[[], Awaitable[None]]

DIRECT_TO_DEVICE = "m.direct_to_device"
DEVICE_LIST_UPDATE = "m.device_list_update"
SIGNING_KEY_UPDATE = "m.signing_key_update"


async def _nothing() -> None:
    return None


class DurableEduSource(Protocol):
    async def take(self, destination: str, limit: int) -> tuple[list[JsonDict], Ack]: ...


class ToDeviceOutbox:
    """``m.direct_to_device`` EDUs from the to-device outbox; acknowledged rows are deleted."""

    def __init__(self, store: ToDeviceStore) -> None:
        self._store = store

    async def destinations(self) -> list[str]:
        return await self._store.get_outbox_destinations()

    async def take(self, destination: str, limit: int) -> tuple[list[JsonDict], Ack]:
        entries = await self._store.get_outbox(destination, 0, 2**62, limit)
        if not entries:
            return [], _nothing
        up_to = entries[-1].stream_id

        async def ack() -> None:
            await self._store.delete_outbox(destination, up_to)

        return [{"edu_type": DIRECT_TO_DEVICE, "content": e.edu} for e in entries], ack


class DeviceListOutbox:
    """``m.device_list_update`` (one per changed device) and ``m.signing_key_update`` EDUs.

    ``stream_id`` is the device_lists stream id of the change; ``prev_id`` the
    id of the previous update this destination accepted for the user (or the
    previous one in the same transaction), so the receiver can see gaps.
    """

    def __init__(self, store: FederationSenderStore, keys: E2EKeyStore) -> None:
        self._store = store
        self._keys = keys

    async def destinations(self) -> list[str]:
        return await self._store.get_device_list_outbox_destinations()

    async def take(self, destination: str, limit: int) -> tuple[list[JsonDict], Ack]:
        pending = await self._store.get_pending_device_list_changes(destination, limit)
        if not pending:
            return [], _nothing
        users = {c.user_id for c in pending}
        last_sent = await self._store.get_device_list_last_sent(destination, users)
        # Device keys and cross-signing keys go out with the user's own signatures of them
        # (self-signing key on devices, devices on the master key), as /user/keys/query has them.
        own_signatures: dict[tuple[str, str], list[SignatureRow]] = {}
        for row in await self._keys.get_signatures(users, ""):
            if row.signer_user_id == row.target_user_id:
                own_signatures.setdefault((row.target_user_id, row.target_key_id), []).append(row)
        edus: list[JsonDict] = []
        prev_by_user: dict[str, list[int]] = {u: [s] for u, s in last_sent.items()}
        current_id: dict[str, int] = {}
        for change in pending:
            if change.device_id is None:
                edu = await self._signing_key_update(change, own_signatures)
                if edu is not None:
                    edus.append(edu)
                continue
            user_id = change.user_id
            if current_id.get(user_id) not in (None, change.stream_id):
                # A new id for this user: its predecessor is the id sent just before.
                prev_by_user[user_id] = [current_id[user_id]]
            current_id[user_id] = change.stream_id
            edus.append(await self._device_update(change, prev_by_user.get(user_id, []), own_signatures))

        async def ack() -> None:
            await self._store.ack_device_list_changes(destination, pending)

        return edus, ack

    async def _device_update(self, change: PendingDeviceListChange, prev_id: list[int],
                             own_signatures: Mapping[tuple[str, str], list[SignatureRow]]) -> JsonDict:
        assert change.device_id is not None
        found = await self._keys.get_devices_with_keys({change.user_id: [change.device_id]})
        content: JsonDict = {
            "user_id": change.user_id, "device_id": change.device_id, "stream_id": change.stream_id,
            "prev_id": list(prev_id),
        }
        if not found:
            content["deleted"] = True
        else:
            device = found[0]
            if device.keys is not None:
                content["keys"] = _with_signatures(device.keys, own_signatures.get((change.user_id, change.device_id), []))
            if device.display_name is not None:
                content["device_display_name"] = device.display_name
        return {"edu_type": DEVICE_LIST_UPDATE, "content": content}

    async def _signing_key_update(self, change: PendingDeviceListChange,
                                  own_signatures: Mapping[tuple[str, str], list[SignatureRow]]) -> Optional[JsonDict]:
        keys = (await self._keys.get_cross_signing_keys([change.user_id])).get(change.user_id, {})
        content: JsonDict = {"user_id": change.user_id}
        for keytype, field in (("master", "master_key"), ("self_signing", "self_signing_key")):
            key = keys.get(keytype)
            if key is not None:
                rows = [r for public in key.get("keys", {}).values()
                        for r in own_signatures.get((change.user_id, public), [])]
                content[field] = _with_signatures(key, rows)
        if len(content) == 1:
            return None  # only the user-signing key changed: other servers never see it
        return {"edu_type": SIGNING_KEY_UPDATE, "content": content}


def _with_signatures(key: JsonDict, rows: Sequence[SignatureRow]) -> JsonDict:
    """A copy of ``key`` with the stored signatures ``rows`` of it added."""
    if not rows:
        return key
    existing = key.get("signatures")
    signatures: dict[str, Any] = {u: dict(s) for u, s in existing.items() if isinstance(s, dict)} \
        if isinstance(existing, dict) else {}
    for row in rows:
        signatures.setdefault(row.signer_user_id, {})[row.signer_key_id] = row.signature
    return {**key, "signatures": signatures}
