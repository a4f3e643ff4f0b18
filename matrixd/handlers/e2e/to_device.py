"""Send-to-device messaging: ``PUT /sendToDevice/{eventType}/{txnId}`` and the
per-device inboxes ``/sync`` delivers from.

Messages for local devices go into their inboxes; messages for users of other
servers are queued, one ``m.direct_to_device`` EDU per destination, in the
federation outbox on the same stream (the federation sender drains it).  A
repeated transaction id from the same device sends nothing again.
"""

from __future__ import annotations

import secrets
from typing import Callable, Optional
from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.sync.announcer import StreamAnnouncer
from matrixd.handlers.e2e.signing import invalid_param, require_dict
from matrixd.storage.accounts import DeviceStore
from matrixd.storage.cache import LruCache
from matrixd.storage.e2e_keys import canonical
from matrixd.storage.streams import StreamIdGenerator
from matrixd.storage.to_device import ToDeviceStore
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName
from matrixd.types import IdentifierError, JsonDict, Requester, get_domain_from_id
from matrixd.util.linearizer import Linearizer

#: The largest content of one message (canonical JSON): what fits in one federation EDU.
MAX_MESSAGE_BYTES = 65_536
#: The most messages one request may send (after ``*`` expansion).
MAX_MESSAGES_PER_REQUEST = 10_000
#: How many messages one /sync delivers at most (the spec's recommendation).
DEFAULT_SYNC_LIMIT = 100


class ToDeviceHandler:
    def __init__(self, *, server_name: str, store: ToDeviceStore, devices: DeviceStore,
                 stream_ids: StreamIdGenerator, notifier: Notifier,
                 max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._server_name = server_name
        self._store = store
        self._devices = devices
        self._ids = stream_ids
        self._announcer = StreamAnnouncer.for_id_generator(notifier, StreamName.TO_DEVICE, stream_ids)
        self._max_bytes = max_message_bytes
        self._txn_lock = Linearizer("to_device_txn")
        # (user, device) -> the position up to which this process last deleted its messages:
        # every message at or below it was committed then (acks come from announced tokens),
        # so acking up to it again has nothing to delete (a sync without to-device traffic).
        self._acked: LruCache[tuple[str, str], int] = LruCache("to_device_acked", 20_000)

    def current_position(self) -> int:
        return self._announcer.current_position()

    def set_publisher(self, notify: Callable[[], None]) -> None:
        """Announce writes through the replication publisher (``notify`` is its notify for this stream)."""
        self._announcer.publish_through(notify)

    async def send_to_device(self, requester: Requester, event_type: str, txn_id: str, body: JsonDict) -> None:
        if not event_type:
            raise invalid_param("The event type must not be empty")
        messages = require_dict(body.get("messages"), "messages")
        parsed: dict[str, dict[str, JsonDict]] = {}
        for user_id, by_device in messages.items():
            if not isinstance(user_id, str) or not user_id.startswith("@"):
                raise invalid_param(f"messages: {user_id!r} is not a user id")
            try:
                get_domain_from_id(user_id)
            except IdentifierError:
                raise invalid_param(f"messages: {user_id!r} is not a user id") from None
            by_device = require_dict(by_device, f"messages.{user_id}")
            for device_id, content in by_device.items():
                content = require_dict(content, f"messages.{user_id}.{device_id}")
                if len(canonical(content).encode("utf-8")) > self._max_bytes:
                    raise MatrixError(413, f"The message for {user_id} {device_id} is over {self._max_bytes} bytes",
                                      Codes.TOO_LARGE)
                parsed.setdefault(user_id, {})[device_id] = content

        sender = requester.user_id
        local: list[tuple[str, str, JsonDict]] = []
        remote: dict[str, JsonDict] = {}
        for user_id, by_device in sorted(parsed.items()):
            domain = get_domain_from_id(user_id)
            if domain == self._server_name:
                local.extend(await self._expand_local(sender, event_type, user_id, by_device))
            else:
                edu = remote.setdefault(domain, {
                    "sender": sender, "type": event_type, "message_id": secrets.token_urlsafe(16), "messages": {},
                })
                edu["messages"][user_id] = by_device
        if len(local) + sum(len(m) for e in remote.values() for m in e["messages"].values()) > MAX_MESSAGES_PER_REQUEST:
            raise MatrixError(413, f"At most {MAX_MESSAGES_PER_REQUEST} messages per request", Codes.TOO_LARGE)

        sender_device = requester.device_id or ""
        async with self._txn_lock.queue((sender, sender_device, txn_id)):
            allocated: Optional[int] = None
            try:
                with self._ids.get_next() as stream_id:
                    allocated = stream_id
                    stored = await self._store.add_messages(sender, sender_device, txn_id, stream_id, local,
                                                            remote)
            except BaseException:
                if allocated is not None:
                    # The id finished (rolled back): release announcements held behind it.
                    self._announcer.announce(allocated, ())
                raise
            # Announce even for a repeated txn id: the id is finished either way.
            self._announcer.announce(stream_id, {u for u, _, _ in local} if stored else ())

    async def _expand_local(self, sender: str, event_type: str, user_id: str,
                            by_device: dict[str, JsonDict]) -> list[tuple[str, str, JsonDict]]:
        """Inbox rows for a local user's existing devices (``*``: every device)."""
        existing = {d.device_id for d in await self._devices.get_devices(user_id)}
        out: dict[str, JsonDict] = {}
        wildcard = by_device.get("*")
        if wildcard is not None:
            for device_id in existing:
                out[device_id] = wildcard
        for device_id, content in by_device.items():
            if device_id != "*" and device_id in existing:
                out[device_id] = content
        return [(user_id, d, {"sender": sender, "type": event_type, "content": c}) for d, c in sorted(out.items())]

    # -- the sync side -----------------------------------------------------------------------

    async def get_messages(self, user_id: str, device_id: str, since_pos: int,
                           limit: int = DEFAULT_SYNC_LIMIT) -> tuple[list[JsonDict], int]:
        """Messages after ``since_pos`` (at most ``limit``) and the position to resume from."""
        to_pos = self.current_position()
        if since_pos >= to_pos:
            return [], since_pos
        rows = await self._store.get_messages(user_id, device_id, since_pos, to_pos, limit)
        if len(rows) >= limit:
            return [ev for _, ev in rows], rows[-1][0]
        return [ev for _, ev in rows], to_pos

    async def ack(self, user_id: str, device_id: str, up_to_pos: int) -> None:
        key = (user_id, device_id)
        done = self._acked.get(key)
        if done is not None and up_to_pos <= done:
            return
        await self._store.delete_messages(user_id, device_id, up_to_pos)
        done = self._acked.get(key)
        if done is None or up_to_pos > done:
            self._acked.set(key, up_to_pos)

