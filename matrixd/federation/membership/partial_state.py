"""Completing a partial-state join: fetch the room's full state at our join, then recompute what rests on it.

A join made with ``omit_members`` (``remote.py``) leaves the room marked in
``partial_state_rooms``.  ``PartialStateResync.start(room_id)`` then, in the
background:

1. asks a server of the room (the one that answered send_join first, then
   the others of ``servers_in_room`` and those learnt since) for ``/state``
   at the join event: the ids of its PDUs are the state and its auth chain
   (``/state_ids`` gives them when a PDU cannot even be read); the events we
   lack pass the batch receipt checks (``pdu_checks.PduBatch``), each
   verified when first needed, and are auth-checked against their own auth
   events as they are stored as outliers, in chunks, each written while the
   next is checked; one the answer lacks or that fails its checks is asked
   for with ``/event``;
2. under the room lock, gives the join event the full state before it, and
   recomputes the state of every later timeline event of the room in stream
   order from its prev events.  Events received while the room was partial
   were auth-checked against their auth events and a state made of the partial
   state and those auth events (``inbound.events``); each is now re-checked
   against its full state before, and one that fails is marked rejected (it no
   longer counts for the state of what follows);
3. sets the room's current state to the state after its forward extremities,
   and clears the mark.

A server that fails is left for the next; when every one failed, the round is
retried after a growing delay.  Rooms still marked at start-up are resumed
(``resume``).  ``wait_for_full_state`` lets readers that need the member list
(``/members``) wait, bounded.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Iterable, Optional

from twisted.internet import defer
from twisted.python.failure import Failure

from matrixd.api.errors import AuthError
from matrixd.events.event import Event, StateKey, StateMap
from matrixd.events.room_versions import RoomVersion
from matrixd.federation.inbound.events import FederationEventHandler
from matrixd.federation.inbound.pdu_checks import PduBatch, PduDropped
from matrixd.federation.missing_events import RemoteEventFetcher, RemoteFetchError
from matrixd.federation.transport.client import HttpResponseException, RequestSendFailed
from matrixd.handlers.events.persister import EventPersister
from matrixd.handlers.events.state_calc import StateCalculator
from matrixd.state.auth import auth_types_for_event, check_state_dependent_auth_rules
from matrixd.storage.events import EventStore
from matrixd.storage.partial_state import PartialStateRoom, PartialStateStore, clear_partial_state_txn
from matrixd.storage.rooms import RoomStore
from matrixd.storage.state import StateGroupStore
from matrixd.util.clock import Clock
from matrixd.util.linearizer import Linearizer
from matrixd.util.malloc import release_free_memory

logger = logging.getLogger(__name__)

#: Delay before the first retry round once every server failed; doubled each round up to the maximum.
RETRY_DELAY = 5.0
MAX_RETRY_DELAY = 600.0
#: Timeline events whose state is recomputed per batch.
RECOMPUTE_BATCH = 500

CREATE_KEY: StateKey = ("m.room.create", "")


class _ResyncFailed(Exception):
    """This server could not give us the full state."""


class PartialStateResync:
    def __init__(
        self,
        *,
        clock: Clock,
        server_name: str,
        store: PartialStateStore,
        fetcher: RemoteEventFetcher,
        rooms: RoomStore,
        events: EventStore,
        state: StateGroupStore,
        state_calc: StateCalculator,
        event_handler: FederationEventHandler,
        persister: EventPersister,
        room_lock: Linearizer,
        forget_state_after: Callable[[Iterable[str]], None] = lambda _ids: None,
    ) -> None:
        self._forget_state_after = forget_state_after
        self._groups_replaced: Optional[Callable[[list[str]], Awaitable[object]]] = None
        self._clock = clock
        self._server_name = server_name
        self._store = store
        self._fetcher = fetcher
        self._rooms = rooms
        self._events = events
        self._state = state
        self._state_calc = state_calc
        self._event_handler = event_handler
        self._persister = persister
        self._room_lock = room_lock
        self._running: dict[str, "defer.Deferred[None]"] = {}
        self._waiters: dict[str, list["defer.Deferred[None]"]] = {}
        self._stopped = False

    # -- control -----------------------------------------------------------------------

    def start(self, room_id: str) -> None:
        """Resync ``room_id`` in the background (once: a resync already running is left alone)."""
        if room_id in self._running or self._stopped:
            return
        d = defer.ensureDeferred(self._run(room_id))
        self._running[room_id] = d

        def done(result: object) -> None:
            self._running.pop(room_id, None)
            for waiter in self._waiters.pop(room_id, []):
                if not waiter.called:
                    waiter.callback(None)

        def failed(f: Failure) -> None:
            if not f.check(defer.CancelledError):
                logger.error("partial-state resync of %s failed: %s", room_id, f.getTraceback())

        d.addErrback(failed)
        d.addBoth(done)

    async def resume(self) -> None:
        """Start the resync of every room still marked partial-state (at start-up)."""
        for room in await self._store.get_all():
            logger.info("resuming the partial-state resync of %s", room.room_id)
            self.start(room.room_id)

    def stop(self) -> None:
        self._stopped = True
        for d in list(self._running.values()):
            d.cancel()

    def set_groups_replaced_listener(self, listener: Callable[[list[str]], Awaitable[object]]) -> None:
        """Told the ids of events whose state groups the resync replaced (workers' caches go stale)."""
        self._groups_replaced = listener

    def is_running(self, room_id: str) -> bool:
        return room_id in self._running

    async def wait_for_full_state(self, room_id: str, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until ``room_id`` is no longer partial-state; whether it is not."""
        if not await self._store.is_partial(room_id):
            return True
        if room_id in self._running:
            waiter: "defer.Deferred[None]" = defer.Deferred()
            self._waiters.setdefault(room_id, []).append(waiter)

            def expire() -> None:
                if not waiter.called:
                    waiter.callback(None)

            timer = self._clock.call_later(timeout, expire)
            await waiter
            if timer.active():
                timer.cancel()
        return not await self._store.is_partial(room_id)

    # -- the resync --------------------------------------------------------------------

    async def _run(self, room_id: str) -> None:
        delay = RETRY_DELAY
        while not self._stopped:
            room = await self._store.get(room_id)
            if room is None:
                return
            join = await self._events.get_event(room.join_event_id)
            if join is None or join.internal_metadata.outlier:
                # The join was never persisted (a crash between marking and persisting it).
                logger.info("partial-state mark of %s names no stored join: dropped", room_id)
                await self._store.clear(room_id)
                return
            for server in self._servers(room):
                try:
                    await self._resync_from(room, join, server)
                    release_free_memory()  # the answer's megabytes, freed between live objects
                    return
                except (_ResyncFailed, RemoteFetchError, HttpResponseException, RequestSendFailed) as e:
                    logger.info("partial-state resync of %s from %s failed: %s", room_id, server, e)
            logger.info("partial-state resync of %s: no server answered, retrying in %.0fs", room_id, delay)
            await self._clock.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)

    def _servers(self, room: PartialStateRoom) -> list[str]:
        ordered = [room.joined_via, *room.servers]
        return [s for i, s in enumerate(ordered) if s and s != self._server_name and s not in ordered[:i]]

    async def _resync_from(self, room: PartialStateRoom, join: Event, server: str) -> None:
        started = self._clock.time()
        rv = await self._rooms.get_room_version(room.room_id)
        batch, state_count = await self._fetcher.get_state_batch(server, rv, room.room_id, join.event_id)
        answered_at = self._clock.time()
        ids = batch.event_ids()
        if all(i is not None for i in ids):
            state_ids = [i for i in ids[:state_count] if i is not None]
            chain_ids = [i for i in ids[state_count:] if i is not None]
        else:  # a PDU we cannot even read: the ids from /state_ids, and by id what the answer lacks
            state_ids, chain_ids = await self._fetcher.get_state_ids(server, room.room_id, join.event_id,
                                                                     max_events=None)
        wanted = set(state_ids) | set(chain_ids)
        missing = wanted - await self._events.have_seen_events(wanted)
        fetched: dict[str, Event] = {}
        from_state: dict[str, int] = {}  # event id -> index in batch, for the events not verified yet
        for i, candidate in batch.candidates():
            if candidate.event_id in missing and candidate.room_id == room.room_id \
                    and candidate.event_id not in fetched:
                fetched[candidate.event_id] = candidate
                from_state[candidate.event_id] = i
        left = missing - fetched.keys()
        if left:
            fetched.update((e.event_id, e) for e in await self._fetcher.get_events(server, rv, sorted(left)))
        if fetched:
            await self._store_fetched(room.room_id, rv, server, fetched, batch, from_state)
        # The answer's events are stored: let them go before the state is applied (a large
        # room's answer is most of the resync's memory).
        fetched_count = len(fetched)
        del batch, fetched, from_state
        state_keys = await self._events.get_state_keys(state_ids)
        absent = set(state_ids) - set(state_keys)
        if absent:
            raise _ResyncFailed(f"{len(absent)} state events could not be fetched, e.g. {sorted(absent)[:3]}")
        partial_before = await self._state.get_state_ids_for_event(join.event_id, before=True) or {}
        full_before: dict[StateKey, str] = {
            (event_type, state_key): event_id
            for event_id, (room_id, event_type, state_key, rejected) in state_keys.items()
            if room_id == room.room_id and state_key is not None and not rejected
        }
        own = join.state_key_tuple()
        if full_before.get(own) == join.event_id:  # a server answering with the state after the join
            full_before.pop(own)
            if own in partial_before:
                full_before[own] = partial_before[own]
        if CREATE_KEY not in full_before:
            raise _ResyncFailed("the state has no create event")
        fetched_at = self._clock.time()
        async with self._room_lock.queue(room.room_id):
            # The mark goes in the transaction of the full current state (see _apply_full_state).
            recomputed, _position = await self._apply_full_state(room.room_id, rv, join, full_before)
        logger.info(
            "partial-state resync of %s from %s: %d state events (%d fetched), %d later events recomputed;"
            " state answered in %.2fs, checked and stored in %.2fs, recomputed in %.2fs",
            room.room_id, server, len(full_before), fetched_count, recomputed, answered_at - started,
            fetched_at - answered_at, self._clock.time() - fetched_at,
        )

    async def _store_fetched(self, room_id: str, rv: RoomVersion, server: str, fetched: dict[str, Event],
                             batch: PduBatch, from_state: dict[str, int]) -> None:
        """Check and store the fetched events as outliers, under the room lock.

        Those of ``from_state`` (event id -> index) come from ``batch`` unverified: each is verified
        when the checks first need it, so the signature checks of later events overlap the writes of
        earlier ones. One that fails is asked for again by id, as one missing from the answer would be.
        """

        async def resolve(ev: Event) -> Optional[Event]:
            i = from_state.get(ev.event_id)
            if i is None:
                return ev  # verified already
            result = batch.result(i)
            if not isinstance(result, PduDropped):
                return result
            logger.info("dropping a fetched PDU: %s", result)
            again = [e for e in await self._fetcher.get_events(server, rv, [ev.event_id]) if e.room_id == room_id]
            return again[0] if again else None

        async with self._room_lock.queue(room_id):
            have = await self._events.have_seen_events(list(fetched))
            await self._event_handler.store_outliers(
                room_id, [e for e in fetched.values() if e.event_id not in have], known=fetched, resolve=resolve)

    async def _apply_full_state(self, room_id: str, rv: RoomVersion, join: Event,
                                full_before: StateMap) -> tuple[int, int]:
        """Re-state the join and every later event, then the current state.

        Returns the number of later events and the events-stream position of the new current state.
        """
        group_before = await self._state.store_state_group(join.event_id, room_id, None, None, full_before)
        after = dict(full_before)
        after[join.state_key_tuple()] = join.event_id
        group_after = await self._state.store_state_group(join.event_id, room_id, group_before, None, after)
        groups: dict[str, int] = {join.event_id: group_after}
        rows: list[tuple[str, int, int]] = [(join.event_id, group_after, group_before)]
        position = join.internal_metadata.stream_ordering or 0
        count = 0
        while True:
            ids = await self._events.get_room_event_ids_after(room_id, position, RECOMPUTE_BATCH)
            if not ids:
                break
            batch = await self._events.get_events(ids)
            for event_id in ids:
                event = batch.get(event_id)
                if event is None:
                    continue
                position = event.internal_metadata.stream_ordering or position
                row = await self._recompute(room_id, rv, event, groups)
                if row is not None:
                    groups[event_id] = row[1]
                    rows.append(row)
                    count += 1
        await self._state.replace_event_groups(rows)
        self._forget_state_after(r[0] for r in rows)  # the event builder's remembered (partial) states
        if self._groups_replaced is not None:
            await self._groups_replaced([r[0] for r in rows])
        extremities = await self._events.get_latest_event_ids_in_room(room_id)
        current = await self._state_calc.state_after_events(room_id, rv, extremities)
        # Clearing the mark commits with the full current state, before any /sync is woken at its
        # position: a sync that sees the new position sees the room resynced (shown as newly joined
        # to a client whose token is before it), never partial with a token past the resync.
        position = await self._persister.replace_current_state(
            room_id, current.state_ids,
            in_same_txn=lambda txn, stream_id: clear_partial_state_txn(txn, room_id, stream_id),
            after_commit=lambda stream_id: self._store.forget_partial(room_id, stream_id),
        )
        return count, position

    async def _recompute(self, room_id: str, rv: RoomVersion, event: Event,
                         groups: dict[str, int]) -> Optional[tuple[str, int, int]]:
        """The event's new ``(id, group after, group before)``; None if its state did not rest on the join's."""
        prevs = event.prev_event_ids()
        stored = await self._state.get_state_groups_for_events([p for p in prevs if p not in groups])
        prev_groups = {p: groups.get(p, stored.get(p)) for p in prevs}
        if any(g is None for g in prev_groups.values()):
            return None  # its state was fetched from another server when it arrived: already full
        distinct = sorted({g for g in prev_groups.values() if g is not None})
        sets = await self._state.get_state_ids_for_groups(distinct)
        before = sets[distinct[0]] if len(distinct) == 1 else await self._state_calc.resolve(
            room_id, rv, [sets[g] for g in distinct])
        if not event.rejected and not await self._allowed(rv, event, before):
            reason = "auth: not allowed by the full state before it (received while the room had partial state)"
            logger.warning("rejecting %s after the partial-state resync of %s", event.event_id, room_id)
            await self._events.mark_rejected(event.event_id, reason)
            event.internal_metadata.rejected_reason = reason
        # The state after a single prev event is its group; a resolved state is stored as a delta against one.
        group_before = distinct[0] if len(distinct) == 1 else await self._state.store_state_group(
            event.event_id, room_id, distinct[0], None, before)
        if event.is_state() and not event.rejected:
            after = dict(before)
            after[event.state_key_tuple()] = event.event_id
            return event.event_id, await self._state.store_state_group(
                event.event_id, room_id, group_before, None, after), group_before
        return event.event_id, group_before, group_before

    async def _allowed(self, rv: RoomVersion, event: Event, state_before: StateMap) -> bool:
        keys = set(auth_types_for_event(rv, event)) | {CREATE_KEY}
        state_events = await self._state_calc.load_state_events(state_before, keys)
        try:
            check_state_dependent_auth_rules(rv, event, state_events, create_event=state_events.get(CREATE_KEY))
        except AuthError as e:
            logger.info("%s fails against its full state: %s", event.event_id, e.msg)
            return False
        return True
