"""The master's ``FederationSender`` when a ``federation_sender`` worker sends.

``send_pdu`` / ``send_edu`` return at once, as the local sender's do: the
request is stored as a ``federation_outbox`` row (after the event itself was
persisted, so the worker can read it) and announced on the stream of that
name; the sender worker queues it (``FederationSenderService.notify_outbox``).
"""

from __future__ import annotations

import logging
from typing import Callable, Collection, Optional

from twisted.internet import defer

from matrixd.events.event import Event
from matrixd.storage.federation_outbox import FederationOutboxStore
from matrixd.storage.streams import StreamIdGenerator
from matrixd.types import JsonDict

logger = logging.getLogger(__name__)


class OutboxFederationSender:
    """Implements ``matrixd.federation.sender_api.FederationSender`` by writing the outbox."""

    def __init__(self, *, server_name: str, store: FederationOutboxStore, stream_ids: StreamIdGenerator,
                 notify: Callable[[], None]) -> None:
        self._server_name = server_name
        self._store = store
        self._ids = stream_ids
        self._notify = notify

    def send_pdu(self, event: Event, destinations: Collection[str]) -> None:
        targets = sorted(d for d in set(destinations) if d != self._server_name)
        if targets:
            self._write(targets, event.event_id, None)

    def send_edu(self, destination: str, edu_type: str, content: JsonDict, key: Optional[str] = None) -> None:
        if destination != self._server_name:
            self._write([destination], None, {"edu_type": edu_type, "content": content, "key": key})

    def _write(self, destinations: list[str], event_id: Optional[str], edu: Optional[JsonDict]) -> None:
        async def write() -> None:
            with self._ids.get_next() as stream_id:
                await self._store.add(stream_id, destinations, event_id, edu)
            self._notify()

        d = defer.ensureDeferred(write())
        d.addErrback(lambda f: logger.error("handing %s to the federation sender failed: %s",
                                            event_id or (edu or {}).get("edu_type"), f.value))
