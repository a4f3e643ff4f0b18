"""The outbound federation sender: turns stream positions into per-destination queues.

Inputs are stream positions, so the sender can move to a ``federation_sender``
worker unchanged (its replication dispatcher then calls the ``notify_*``
methods instead of the master's post-commit hooks):

* **events**: local, non-outlier events after the sender's stored position
  (``federation_stream_positions``) go to every other server with a joined
  user in the room in the state after the event (and, for membership
  events, the target's server).  The rows that tell catch-up what each
  destination should have (``federation_destination_rooms``) are written
  together with the new position, before anything is sent.
* **device_lists**: changes of local users are queued (durably) for the
  servers sharing a room with the user.
* **to_device**: the e2e area's outbox already holds one EDU per destination;
  the sender only wakes the destinations that have some.
* ephemeral EDUs (typing, receipts, presence) arrive through the
  ``on_local_*`` hooks the sync area's handlers call (see ``FederationEduHooks``).

``start()`` loads the positions (a fresh server starts at the current end of
each stream: it does not replay history), puts destinations that were owed
events at shutdown into catch-up, and starts watching the notifier.
"""

from __future__ import annotations

import logging
import random
from typing import Awaitable, Callable, Collection, Optional, Sequence

from prometheus_client import Gauge
from twisted.internet import defer

from matrixd.events.event import Event
from matrixd.federation.sender.backoff import RetryPolicy
from matrixd.federation.sender.destination import DestinationQueue
from matrixd.federation.sender.durable_edus import DeviceListOutbox, ToDeviceOutbox
from matrixd.federation.transport.client import MatrixFederationClient
from matrixd.federation.visibility import domain_or_none
from matrixd.storage.device_lists import DeviceListStore
from matrixd.storage.events import EventStore
from matrixd.storage.federation_outbox import FederationOutboxStore
from matrixd.storage.federation_sender import FederationSenderStore
from matrixd.storage.state import StateGroupStore
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName
from matrixd.types import JsonDict
from matrixd.util.clock import Clock

PENDING_PDUS = Gauge("synapse_federation_transaction_queue_pending_pdus", "PDUs waiting to be sent, all destinations")
PENDING_EDUS = Gauge("synapse_federation_transaction_queue_pending_edus",
                     "Ephemeral EDUs waiting to be sent, all destinations")

logger = logging.getLogger(__name__)

EVENTS_BATCH = 100
#: The ``federation_stream_positions`` name of the master's outbox (``matrixd.storage.federation_outbox``).
OUTBOX = "federation_outbox"
#: How far the stored events position may fall behind when nothing was queued for remote servers.
EVENTS_POSITION_LAG = 1000
DEVICE_LISTS_BATCH = 500
#: How long one notifier wait lasts before the watcher looks again (seconds).
WATCH_TIMEOUT_S = 60.0


class FederationSenderService:
    """Implements ``matrixd.federation.sender_api.FederationSender`` (see the module docstring)."""

    def __init__(
        self,
        *,
        server_name: str,
        clock: Clock,
        client: MatrixFederationClient,
        store: FederationSenderStore,
        events: EventStore,
        state: StateGroupStore,
        device_lists: DeviceListStore,
        device_list_outbox: DeviceListOutbox,
        to_device_outbox: ToDeviceOutbox,
        notifier: Notifier,
        events_position: Callable[[], int],
        device_lists_position: Callable[[], int],
        hosts_in_room: Callable[[str], Awaitable[Collection[str]]],
        partial_servers: Optional[Callable[[str], Awaitable[Optional[Collection[str]]]]] = None,
        policy: RetryPolicy = RetryPolicy(),
        rng: Optional[random.Random] = None,
    ) -> None:
        self._server_name = server_name
        self._clock = clock
        self._client = client
        self._store = store
        self._events = events
        self._state = state
        self._device_lists = device_lists
        self._device_list_outbox = device_list_outbox
        self._to_device_outbox = to_device_outbox
        self._notifier = notifier
        self._events_position = events_position
        self._device_lists_position = device_lists_position
        self._joined_hosts = hosts_in_room
        self._partial_servers = partial_servers
        self._policy = policy
        self._rng = rng or random.Random()
        self._queues: dict[str, DestinationQueue] = {}
        # Synapse's names for the totals over every destination (one sender per process).
        PENDING_PDUS.set_function(lambda: sum(q.pending_pdus() for q in list(self._queues.values())))
        PENDING_EDUS.set_function(lambda: sum(q.pending_edus() for q in list(self._queues.values())))
        self._txn_prefix = str(clock.time_msec())
        self._txn_counter = 0
        self._started = False
        self._stopped = False
        self._events_pos = 0
        self._events_pos_stored = 0
        self._device_lists_pos = 0
        self._single_flight: dict[str, tuple[bool, bool]] = {}
        self._watches: list["defer.Deferred[None]"] = []
        self._outbox: Optional[FederationOutboxStore] = None
        self._outbox_position: Callable[[], int] = lambda: 0
        self._outbox_pos = 0

    def set_outbox(self, store: FederationOutboxStore, position: Callable[[], int]) -> None:
        """On a ``federation_sender`` worker: also drain the master's ``federation_outbox`` (before ``start``)."""
        self._outbox = store
        self._outbox_position = position

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        events_pos = await self._store.get_stream_position("events")
        if events_pos is None:
            events_pos = self._events_position()
            await self._store.set_stream_position("events", events_pos)
        self._events_pos = events_pos
        self._events_pos_stored = events_pos
        lists_pos = await self._store.get_stream_position("device_lists")
        if lists_pos is None:
            lists_pos = self._device_lists_position()
            await self._store.set_stream_position("device_lists", lists_pos)
        self._device_lists_pos = lists_pos
        if self._outbox is not None:
            outbox_pos = await self._store.get_stream_position(OUTBOX)
            if outbox_pos is None:
                outbox_pos = self._outbox_position()
                await self._store.set_stream_position(OUTBOX, outbox_pos)
            self._outbox_pos = outbox_pos
        for destination in await self._store.get_destinations_needing_catch_up():
            self._queue(destination).start_catch_up()
        for destination in sorted(set(await self._device_list_outbox.destinations())
                                  | set(await self._to_device_outbox.destinations())
                                  | set(self._queues)):
            self._queue(destination).wake()
        self.notify_new_events()
        self.notify_device_lists()
        self.notify_outbox()
        for stream, cb in ((StreamName.TO_DEVICE, self.notify_to_device),
                           (StreamName.DEVICE_LISTS, self.notify_device_lists),
                           (StreamName.EVENTS, self.notify_new_events)):
            watch = defer.ensureDeferred(self._watch(stream, cb))
            watch.addErrback(lambda f: f.trap(defer.CancelledError))
            self._watches.append(watch)

    def stop(self) -> None:
        self._stopped = True
        for d in self._watches:
            d.cancel()
        self._watches = []
        for queue in self._queues.values():
            queue.stop()

    async def _watch(self, stream: StreamName, on_advance: Callable[[], object]) -> None:
        while not self._stopped:
            token = self._notifier.current_token
            seen = token.get(stream)
            await self._notifier.wait_for_token(token.copy_and_replace(stream, seen + 1), WATCH_TIMEOUT_S)
            if self._stopped:
                return
            if self._notifier.current_token.get(stream) > seen:
                on_advance()

    # -- the FederationSender protocol -------------------------------------------------

    def send_pdu(self, event: Event, destinations: Collection[str]) -> None:
        targets = sorted(d for d in set(destinations) if d != self._server_name)
        if not targets:
            return
        ordering = event.internal_metadata.stream_ordering
        for destination in targets:
            self._queue(destination).add_pdu(event, ordering)
        if ordering is not None:
            rows = [(d, event.room_id, ordering, event.event_id) for d in targets]
            d = defer.ensureDeferred(self._store.record_events_queued(rows, None))
            d.addErrback(lambda f: logger.error("recording %s for catch-up failed: %s", event.event_id, f.value))
        for destination in targets:
            self._queue(destination).wake()

    def send_edu(self, destination: str, edu_type: str, content: JsonDict, key: Optional[str] = None) -> None:
        if destination == self._server_name:
            return
        queue = self._queue(destination)
        queue.add_edu(edu_type, content, key)
        queue.wake()

    # -- hooks for the sync area's typing, receipt and presence handlers ---------------------

    async def on_local_typing(self, room_id: str, user_id: str, typing: bool) -> None:
        """A local user started or stopped typing: tell the other servers in the room."""
        content = {"room_id": room_id, "user_id": user_id, "typing": typing}
        for destination in await self._other_hosts(room_id):
            self.send_edu(destination, "m.typing", content, key=f"{room_id}/{user_id}")

    async def on_local_receipt(self, room_id: str, receipt_type: str, user_id: str, event_ids: Sequence[str],
                               data: JsonDict) -> None:
        """A local user sent a receipt: one ``m.receipt`` EDU per server in the room."""
        content = {room_id: {receipt_type: {user_id: {"event_ids": list(event_ids), "data": dict(data)}}}}
        for destination in await self._other_hosts(room_id):
            self.send_edu(destination, "m.receipt", content, key=f"{room_id}/{receipt_type}/{user_id}")

    async def on_local_presence(self, user_id: str, state: JsonDict, rooms: Collection[str]) -> None:
        """A local user's presence changed (``state``: one ``m.presence`` ``push`` entry).

        ``rooms`` are the user's joined rooms: the servers in them get the update.
        """
        destinations: set[str] = set()
        for room_id in rooms:
            destinations.update(await self._other_hosts(room_id))
        entry = dict(state, user_id=user_id)
        for destination in sorted(destinations):
            self.send_edu(destination, "m.presence", {"push": [entry]}, key=user_id)

    async def _other_hosts(self, room_id: str) -> list[str]:
        return sorted(h for h in await self._hosts_in_room(room_id) if h != self._server_name)

    # -- stream inputs ----------------------------------------------------------------------

    def on_event_persisted(self, event: Event) -> None:
        """``EventPersister`` callback: look at the events stream again."""
        self.notify_new_events()

    def notify_new_events(self) -> None:
        self._run_single("events", self._process_events)

    def notify_device_lists(self) -> None:
        self._run_single("device_lists", self._process_device_lists)

    def notify_to_device(self) -> None:
        self._run_single("to_device", self._process_to_device)

    def notify_outbox(self) -> None:
        """The ``federation_outbox`` stream moved (``set_outbox``)."""
        if self._outbox is not None:
            self._run_single(OUTBOX, self._process_outbox)

    def _run_single(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` now, or once more after the running call if one is in progress."""
        if not self._started or self._stopped:
            return
        running, _ = self._single_flight.get(name, (False, False))
        if running:
            self._single_flight[name] = (True, True)
            return
        self._single_flight[name] = (True, False)

        async def loop() -> None:
            try:
                while True:
                    try:
                        await fn()
                    except Exception:
                        logger.exception("federation sender: processing %s failed", name)
                    if not self._single_flight[name][1]:
                        return
                    self._single_flight[name] = (True, False)
            finally:
                self._single_flight[name] = (False, False)

        defer.ensureDeferred(loop())

    async def _process_events(self) -> None:
        while True:
            current = self._events_position()
            if self._events_pos >= current:
                return
            rows = await self._events.get_event_stream_rows(self._events_pos, current, EVENTS_BATCH)
            new_pos = rows[-1].stream_ordering if len(rows) >= EVENTS_BATCH else current
            queued: list[tuple[str, str, int, str]] = []
            to_send: list[tuple[str, Event, int]] = []
            for row in rows:
                if row.outlier or domain_or_none(row.sender) != self._server_name:
                    continue
                event = await self._events.get_event(row.event_id)
                if event is None or event.rejected:
                    continue
                for destination in await self._destinations_for_event(event):
                    queued.append((destination, event.room_id, row.stream_ordering, event.event_id))
                    to_send.append((destination, event, row.stream_ordering))
            # With nothing queued the stored position may lag (a restart re-reads those
            # events and again finds no remote server): a write per local message in a
            # room without remote members would cost a commit each.
            if queued or new_pos - self._events_pos_stored >= EVENTS_POSITION_LAG:
                await self._store.record_events_queued(queued, new_pos)
                self._events_pos_stored = new_pos
            self._events_pos = new_pos
            woken: set[str] = set()
            for destination, event, ordering in to_send:
                self._queue(destination).add_pdu(event, ordering)
                woken.add(destination)
            for destination in sorted(woken):
                self._queue(destination).wake()

    async def _process_outbox(self) -> None:
        assert self._outbox is not None
        while True:
            current = self._outbox_position()
            if self._outbox_pos >= current:
                return
            entries = await self._outbox.get_entries(self._outbox_pos, current, EVENTS_BATCH)
            new_pos = entries[-1].stream_id if len(entries) >= EVENTS_BATCH else current
            for entry in entries:
                if entry.event_id is not None:
                    event = await self._events.get_event(entry.event_id)
                    if event is None:
                        logger.warning("federation outbox: event %s not found; not sent", entry.event_id)
                        continue
                    self.send_pdu(event, entry.destinations)
                elif entry.edu is not None:
                    for destination in entry.destinations:
                        self.send_edu(destination, str(entry.edu.get("edu_type")), dict(entry.edu.get("content") or {}),
                                      entry.edu.get("key"))
            await self._store.set_stream_position(OUTBOX, new_pos)
            self._outbox_pos = new_pos
            await self._outbox.delete_up_to(new_pos)

    async def _hosts_in_room(self, room_id: str) -> Collection[str]:
        """Servers with a joined user now; in a partial-state room also those the join and later events named."""
        hosts = set(await self._joined_hosts(room_id))
        if self._partial_servers is not None:
            hosts.update(await self._partial_servers(room_id) or ())
        return hosts

    async def _destinations_for_event(self, event: Event) -> list[str]:
        """Servers with a joined user in the state after ``event``, and a membership event's target's server.

        While the room has partial state (its member list is not known yet) the
        servers of ``servers_in_room`` and those learnt since are added.
        """
        hosts: set[str] = set()
        if self._partial_servers is not None:
            hosts.update(await self._partial_servers(event.room_id) or ())
        state = await self._state.get_state_ids_for_event(event.event_id)
        if state is None:
            hosts.update(await self._hosts_in_room(event.room_id))
        else:
            member_ids = [eid for (etype, _sk), eid in state.items() if etype == "m.room.member"]
            members = await self._events.get_events(member_ids)
            for member in members.values():
                if member.membership == "join" and member.state_key is not None:
                    domain = domain_or_none(member.state_key)
                    if domain is not None:
                        hosts.add(domain)
        if event.type == "m.room.member" and event.state_key is not None:
            target = domain_or_none(event.state_key)
            if target is not None:
                hosts.add(target)
        hosts.discard(self._server_name)
        return sorted(hosts)

    async def _process_device_lists(self) -> None:
        while True:
            current = self._device_lists_position()
            if self._device_lists_pos >= current:
                return
            rows = await self._device_lists.get_rows(self._device_lists_pos, current, DEVICE_LISTS_BATCH)
            new_pos = rows[-1].stream_id if len(rows) >= DEVICE_LISTS_BATCH else current
            queued: list[tuple[str, str, Optional[str], int]] = []
            hosts_of: dict[str, list[str]] = {}
            for row in rows:
                if row.visible_to is not None or domain_or_none(row.user_id) != self._server_name:
                    continue
                if row.user_id not in hosts_of:
                    sharing = await self._device_lists.get_users_sharing_a_room(row.user_id)
                    hosts_of[row.user_id] = sorted(
                        {d for d in (domain_or_none(u) for u in sharing) if d is not None and d != self._server_name}
                    )
                for destination in hosts_of[row.user_id]:
                    queued.append((destination, row.user_id, row.device_id, row.stream_id))
            await self._store.queue_device_list_changes(queued, new_pos)
            self._device_lists_pos = new_pos
            for destination in sorted({q[0] for q in queued}):
                self._queue(destination).wake()

    async def _process_to_device(self) -> None:
        for destination in await self._to_device_outbox.destinations():
            if destination != self._server_name:
                self._queue(destination).wake()

    # -- queues -----------------------------------------------------------------------------

    def _queue(self, destination: str) -> DestinationQueue:
        queue = self._queues.get(destination)
        if queue is None:
            queue = DestinationQueue(
                destination=destination, server_name=self._server_name, clock=self._clock, client=self._client,
                store=self._store, events=self._events, durable=[self._to_device_outbox, self._device_list_outbox],
                policy=self._policy, rng=self._rng, next_txn_id=self._next_txn_id,
            )
            self._queues[destination] = queue
        return queue

    def get_queue(self, destination: str) -> Optional[DestinationQueue]:
        """The destination's queue, if it has one (metrics, tests, admin)."""
        return self._queues.get(destination)

    def on_backoff_reset(self, destination: str) -> None:
        """An admin cleared ``destination``'s stored backoff: forget ours and try again now."""
        queue = self._queues.get(destination)
        if queue is not None:
            queue.reset_backoff()

    def _next_txn_id(self) -> str:
        self._txn_counter += 1
        return f"{self._txn_prefix}-{self._txn_counter}"
