"""Inbound typing, receipt and presence EDUs, checked and handed to the sync area.

The sync area's typing/receipt/presence handlers subscribe with ``add_sink``
(``RemoteTypingSink.on_remote_typing`` etc.).  What arrives is checked first:
the user must belong to the origin, and for typing and receipts the origin
must have a joined user in the room.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Protocol, Sequence

from matrixd.federation.visibility import domain_or_none
from matrixd.types import JsonDict

logger = logging.getLogger(__name__)

HostInRoom = Callable[[str, str], Awaitable[bool]]


class RemoteTypingSink(Protocol):
    async def on_remote_typing(self, room_id: str, user_id: str, typing: bool) -> None: ...


class RemoteReceiptSink(Protocol):
    async def on_remote_receipt(self, room_id: str, receipt_type: str, user_id: str, event_ids: Sequence[str],
                                data: JsonDict) -> None: ...


class RemotePresenceSink(Protocol):
    async def on_remote_presence(self, user_id: str, state: JsonDict) -> None: ...


class TypingEduHandler:
    def __init__(self, is_host_in_room: HostInRoom) -> None:
        self._in_room = is_host_in_room
        self._sinks: list[RemoteTypingSink] = []

    def add_sink(self, sink: RemoteTypingSink) -> None:
        self._sinks.append(sink)

    async def __call__(self, origin: str, content: JsonDict) -> None:
        room_id, user_id, typing = content.get("room_id"), content.get("user_id"), content.get("typing")
        if not isinstance(room_id, str) or not isinstance(user_id, str) or not isinstance(typing, bool):
            logger.info("malformed m.typing from %s", origin)
            return
        if domain_or_none(user_id) != origin or not await self._in_room(origin, room_id):
            logger.info("m.typing from %s for %s in %s refused", origin, user_id, room_id)
            return
        for sink in self._sinks:
            await sink.on_remote_typing(room_id, user_id, typing)


class ReceiptEduHandler:
    def __init__(self, is_host_in_room: HostInRoom) -> None:
        self._in_room = is_host_in_room
        self._sinks: list[RemoteReceiptSink] = []

    def add_sink(self, sink: RemoteReceiptSink) -> None:
        self._sinks.append(sink)

    async def __call__(self, origin: str, content: JsonDict) -> None:
        for room_id, by_type in content.items():
            if not isinstance(by_type, dict) or not await self._in_room(origin, room_id):
                continue
            for receipt_type, by_user in by_type.items():
                if not isinstance(by_user, dict):
                    continue
                for user_id, receipt in by_user.items():
                    if domain_or_none(user_id) != origin or not isinstance(receipt, dict):
                        continue
                    event_ids = receipt.get("event_ids")
                    data = receipt.get("data", {})
                    if (not isinstance(event_ids, list) or not all(isinstance(e, str) for e in event_ids)
                            or not isinstance(data, dict)):
                        continue
                    for sink in self._sinks:
                        await sink.on_remote_receipt(room_id, receipt_type, user_id, event_ids, data)


class PresenceEduHandler:
    def __init__(self) -> None:
        self._sinks: list[RemotePresenceSink] = []

    def add_sink(self, sink: RemotePresenceSink) -> None:
        self._sinks.append(sink)

    async def __call__(self, origin: str, content: JsonDict) -> None:
        push = content.get("push")
        if not isinstance(push, list):
            return
        for entry in push:
            if not isinstance(entry, dict):
                continue
            user_id = entry.get("user_id")
            if not isinstance(user_id, str) or domain_or_none(user_id) != origin:
                continue
            if entry.get("presence") not in ("online", "offline", "unavailable"):
                continue
            state = {k: v for k, v in entry.items() if k != "user_id"}
            for sink in self._sinks:
                await sink.on_remote_presence(user_id, state)
