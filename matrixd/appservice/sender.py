"""Pushing events to application services as transactions, in order, until acknowledged.

Each service with a URL has one :class:`ServiceTransactionSender`.  It follows
the events stream from a position stored per service (so nothing is lost or
re-ordered across restarts): it reads the rows after its position, keeps the
events the service is interested in, records them as the service's single
pending transaction, and sends ``PUT /transactions/{txnId}`` until the service
answers 2xx, backing off exponentially (1 s doubling to 5 min) meanwhile.  Only
then does the position advance and the next transaction start; one transaction
is in flight per service.

Ephemeral events (typing, receipts, presence) are in-memory streams: they are
queued in memory for services that set ``receive_ephemeral`` and ride on the
next transaction (from then on they are persisted with it).  To-device
messages for a service's users go the same way to services that opted in
(MSC4203), under the transaction's ``org.matrix.msc2409.to_device`` key.  The sync area's
typing/receipt/presence writers call :meth:`AppServiceTransactions.notify_ephemeral`.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

from twisted.internet import defer
from twisted.python.failure import Failure

from matrixd.appservice.api import AppServiceApi
from matrixd.appservice.interest import InterestChecker
from matrixd.appservice.registration import AppServiceRegistration
from matrixd.events.client_format import serialize_event
from matrixd.events.event import Event
from matrixd.storage.appservice import AppServiceStore, PendingTransaction
from matrixd.storage.events import EventStore
from matrixd.types import JsonDict
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

BATCH_SIZE = 100
MAX_EPHEMERAL_PER_TXN = 100
MAX_TO_DEVICE_PER_TXN = 100
INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 300.0


class ServiceTransactionSender:
    """The transaction loop of one service (runs only while there is something to send)."""

    def __init__(self, service: AppServiceRegistration, *, clock: Clock, api: AppServiceApi,
                 store: AppServiceStore, events: EventStore, interest: InterestChecker,
                 current_token: Callable[[], int], server_name: str) -> None:
        self.service = service
        self._suffix = ":" + server_name
        self._clock = clock
        self._api = api
        self._store = store
        self._events = events
        self._interest = interest
        self._current_token = current_token
        self._position: Optional[int] = None
        self._ephemeral: list[JsonDict] = []
        self._to_device: list[JsonDict] = []
        self._dirty = False
        self._running: Optional[defer.Deferred[None]] = None
        self._stopped = False

    def wake(self) -> None:
        """Something new may be there: run the loop (or have the running loop look again)."""
        self._dirty = True
        if self._running is None and not self._stopped:
            self._running = defer.ensureDeferred(self._run())
            self._running.addBoth(self._done)

    def queue_ephemeral(self, edu: JsonDict) -> None:
        self._ephemeral.append(edu)
        self.wake()

    def queue_to_device(self, message: JsonDict) -> None:
        self._to_device.append(message)
        self.wake()

    def _done(self, result: object) -> None:
        self._running = None
        if isinstance(result, Failure) and not result.check(defer.CancelledError):
            logger.error("application service %s: sender loop failed: %s", self.service.id,
                         result.getTraceback())
            # The pending transaction (if any) is in the database; try again later.
            self._clock.call_later(INITIAL_BACKOFF, self.wake)

    def stop(self) -> None:
        self._stopped = True
        if self._running is not None:
            self._running.cancel()

    @property
    def position(self) -> Optional[int]:
        return self._position

    async def _run(self) -> None:
        if self._position is None:
            pos = await self._store.get_position(self.service.id, self._current_token())
            self._position = pos.stream_position
        while self._dirty and not self._stopped:
            self._dirty = False
            pending = await self._store.get_pending(self.service.id)
            if pending is None:
                pending = await self._next_transaction()
            if pending is not None:
                await self._deliver(pending)

    async def _next_transaction(self) -> Optional[PendingTransaction]:
        """Record the next batch the service cares about as its pending transaction (None if nothing)."""
        assert self._position is not None
        upper = self._current_token()
        rows = await self._events.get_event_stream_rows(self._position, upper, BATCH_SIZE)
        if len(rows) == BATCH_SIZE:
            upper = rows[-1].stream_ordering
            self._dirty = True
        # Outliers are not in any timeline here, except invites of local users to rooms this server is not
        # in (received over federation): a bridge must see those to accept them.
        wanted = [r.event_id for r in rows if not r.outlier or (
            r.type == "m.room.member" and r.state_key is not None and r.state_key.endswith(self._suffix))]
        events = await self._events.get_events_as_list(wanted) if wanted else []
        interesting = [e.event_id for e in events
                       if not e.rejected and (not e.internal_metadata.outlier or e.membership == "invite")
                       and await self._interest.is_interested_in_event(self.service, e)]
        ephemeral, self._ephemeral = (self._ephemeral[:MAX_EPHEMERAL_PER_TXN],
                                      self._ephemeral[MAX_EPHEMERAL_PER_TXN:])
        to_device, self._to_device = (self._to_device[:MAX_TO_DEVICE_PER_TXN],
                                      self._to_device[MAX_TO_DEVICE_PER_TXN:])
        if self._ephemeral or self._to_device:
            self._dirty = True
        if not interesting and not ephemeral and not to_device:
            if upper > self._position:
                await self._store.set_position(self.service.id, upper)
                self._position = upper
            return None
        return await self._store.create_pending(self.service.id, max(upper, self._position), interesting,
                                                ephemeral, to_device)

    async def _deliver(self, pending: PendingTransaction) -> None:
        backoff = INITIAL_BACKOFF
        while not self._stopped:
            events = await self._events.get_events_as_list(list(pending.event_ids))
            now = self._clock.time_msec()
            body = [serialize_event(e, now) for e in events]
            if await self._api.push_transaction(self.service, pending.txn_id, body, pending.ephemeral,
                                                pending.to_device):
                await self._store.complete_pending(self.service.id, pending)
                self._position = max(self._position or 0, pending.to_position)
                return
            logger.info("application service %s: retrying transaction %d in %.0fs", self.service.id,
                        pending.txn_id, backoff)
            await self._clock.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)


class AppServiceTransactions:
    """All services' senders; told about every persisted event and every ephemeral event."""

    def __init__(self, services: Sequence[AppServiceRegistration], *, clock: Clock, api: AppServiceApi,
                 store: AppServiceStore, events: EventStore, interest: InterestChecker,
                 current_token: Callable[[], int], server_name: str) -> None:
        self._interest = interest
        self.senders = {
            s.id: ServiceTransactionSender(s, clock=clock, api=api, store=store, events=events, interest=interest,
                                           current_token=current_token, server_name=server_name)
            for s in services if s.url is not None
        }

    def start(self) -> None:
        """Catch up: resend a transaction left pending and whatever arrived while we were down."""
        for sender in self.senders.values():
            sender.wake()

    def stop(self) -> None:
        for sender in self.senders.values():
            sender.stop()

    def on_event_persisted(self, event: Event) -> None:
        """The persister's post-commit callback: cache invalidation first, then wake every sender."""
        self._interest.on_event_persisted(event)
        for sender in self.senders.values():
            sender.wake()

    async def notify_ephemeral(self, edu: JsonDict, *, room_id: Optional[str] = None,
                               user_ids: Sequence[str] = ()) -> None:
        """Queue a typing/receipt (``room_id``) or presence (``user_ids``) event for interested services.

        Only services with ``receive_ephemeral`` get them; a room's ephemeral
        events go to services interested in the room, presence to those whose
        user namespace (or room interest, via ``room_id``) covers the users.
        """
        for sender in self.senders.values():
            service = sender.service
            if not service.receive_ephemeral:
                continue
            interested = any(service.is_interested_in_user(u) for u in user_ids)
            if not interested and room_id is not None:
                interested = await self._interest.is_interested_in_room(service, room_id)
            if interested:
                sender.queue_ephemeral(edu)

    def notify_to_device(self, message: JsonDict) -> None:
        """Queue a to-device message for the services that opted in (MSC4203) whose user namespace covers
        its recipient (``to_user_id``)."""
        recipient = message.get("to_user_id")
        if not isinstance(recipient, str):
            return
        for sender in self.senders.values():
            service = sender.service
            if service.receive_to_device and service.is_interested_in_user(recipient):
                sender.queue_to_device(message)
