"""Processing a received PDU (checks 4-6 of the spec's receipt checks) and persisting it.

``FederationEventHandler.on_receive_pdu(origin, event)`` takes an event that
passed checks 1-3 (``pdu_checks``) and, under the room lock:

1. fills a gap before it: its missing prev events are asked for with
   ``/get_missing_events`` (bounded) and processed first, oldest first; if a
   gap remains, the state before the event is fetched with ``/state_ids``
   (and ``/event``) and stored as outliers;
2. fetches missing auth events (``/event_auth``), stored as outliers, each
   checked against its own auth events;
3. rejects the event if it fails the auth rules against its auth events, or
   against the state before it (the prev events' states, resolved);
4. soft-fails it if it fails against the room's current state;
5. persists it (``ReceivedEventPersister``): forward extremities, state
   groups, and the current state, re-resolved when forks merge.

Rejected and soft-failed events are stored (so they are never re-fetched) but
never become extremities or current state.

In a room joined with partial state (``membership.partial_state``) the state
before an event lacks most memberships: steps 3 and 4 then check against that
state completed by the event's own auth events for the keys it lacks (the
sender's membership, typically), and the event's sender's server is added to
the servers our events go to.  Once the full state is known the resync
re-checks these events against it.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Iterable, Mapping, Optional, Sequence, cast

from twisted.internet import defer

from matrixd.api.errors import AuthError
from matrixd.events.event import Event, StateKey, StateMap
from matrixd.events.room_versions import RoomVersion
from matrixd.federation.inbound.pdu_checks import domain_of
from matrixd.federation.missing_events import RemoteEventFetcher, RemoteFetchError
from matrixd.handlers.events.federated import ReceivedEventPersister
from matrixd.handlers.events.persister import PersistedEvent
from matrixd.handlers.events.state_calc import StateCalculator
from matrixd.state.auth import (
    auth_types_for_event,
    check_state_dependent_auth_rules,
    check_state_independent_auth_rules,
)
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.partial_state import PartialStateStore
from matrixd.util.linearizer import Linearizer

logger = logging.getLogger(__name__)

#: A batch of outliers is written in chunks of this many events, each while the next chunk is checked.
OUTLIER_CHUNK = 250

#: Not looked up yet (None is a valid answer: no create event known).
_UNSET = object()

CREATE_KEY: StateKey = ("m.room.create", "")


class FederationEventHandler:
    def __init__(
        self,
        *,
        events: EventStore,
        current_state: CurrentStateStore,
        state_calc: StateCalculator,
        received: ReceivedEventPersister,
        fetcher: RemoteEventFetcher,
        room_lock: Linearizer,
        partial_state: Optional[PartialStateStore] = None,
    ) -> None:
        self._partial = partial_state
        self._events = events
        self._current = current_state
        self._state_calc = state_calc
        self._received = received
        self._fetcher = fetcher
        self._room_lock = room_lock

    @property
    def room_lock(self) -> Linearizer:
        return self._room_lock

    async def on_receive_pdu(self, origin: str, event: Event) -> Optional[PersistedEvent]:
        """Process ``event`` (see the module docstring); None if we already had it."""
        async with self._room_lock.queue(event.room_id):
            return await self.process_locked(origin, event, fetch_missing=True)

    async def process_locked(self, origin: str, event: Event, *, fetch_missing: bool,
                             backfilled: bool = False) -> Optional[PersistedEvent]:
        existing = await self._events.get_event(event.event_id)
        if existing is not None and not existing.internal_metadata.outlier:
            return None
        rv = event.room_version
        prevs = event.prev_event_ids()
        missing = await self._missing_timeline_events(prevs)
        if missing and fetch_missing and not backfilled:
            await self._fill_gap(origin, event)
            missing = await self._missing_timeline_events(prevs)

        if missing:
            try:
                state_before = await self._state_from_remote(origin, event)
            except RemoteFetchError as e:
                logger.info("cannot learn the state at %s: %s", event.event_id, e)
                raise
            group_before: Optional[int] = None
        else:
            at = await self._state_calc.state_after_events(event.room_id, rv, prevs)
            state_before, group_before = at.state_ids, at.state_group

        partial = self._partial is not None and await self._partial.is_partial(event.room_id)
        await self._check_auth(origin, event, state_before, partial)
        if not event.rejected and not backfilled:
            await self._check_soft_fail(event, state_before, partial)
        if event.rejected:
            logger.info("rejecting %s from %s: %s", event.event_id, origin, event.internal_metadata.rejected_reason)
        persisted = await self._received.persist(event, state_before, group_before, backfilled=backfilled)
        if partial and self._partial is not None and not event.rejected:
            sender_server = domain_of(event.sender)
            if sender_server is not None:
                await self._partial.add_servers(event.room_id, [sender_server])
        return persisted

    async def _missing_timeline_events(self, event_ids: Iterable[str]) -> list[str]:
        ids = list(event_ids)
        found = await self._events.get_events(ids)
        return [i for i in ids if i not in found or found[i].internal_metadata.outlier]

    # -- gaps ------------------------------------------------------------------------

    async def _fill_gap(self, origin: str, event: Event) -> None:
        extremities = await self._events.get_latest_event_ids_in_room(event.room_id)
        ext_events = await self._events.get_events(extremities)
        min_depth = min((e.depth for e in ext_events.values()), default=0)
        fetched = await self._fetcher.get_missing_events(
            origin, event.room_version, event.room_id, extremities, [event.event_id], min_depth
        )
        for prev in fetched:
            if prev.event_id == event.event_id:
                continue
            try:
                await self.process_locked(origin, prev, fetch_missing=False)
            except RemoteFetchError as e:
                logger.info("could not process missing event %s: %s", prev.event_id, e)

    async def _state_from_remote(self, origin: str, event: Event) -> StateMap:
        """The state before ``event`` as ``origin`` says it is; its events stored as outliers."""
        state_ids, chain_ids = await self._fetcher.get_state_ids(origin, event.room_id, event.event_id)
        await self._fetch_outliers(origin, event.room_version, event.room_id, set(state_ids) | set(chain_ids))
        events = await self._events.get_events(state_ids)
        missing = set(state_ids) - set(events)
        if missing:
            raise RemoteFetchError(f"could not fetch state events {sorted(missing)[:5]}")
        state: dict[StateKey, str] = {}
        for ev in events.values():
            if ev.room_id == event.room_id and ev.is_state() and not ev.rejected:
                state[ev.state_key_tuple()] = ev.event_id
        return state

    async def _fetch_outliers(self, origin: str, rv: RoomVersion, room_id: str, event_ids: set[str]) -> None:
        have = await self._events.have_seen_events(event_ids)
        fetched = await self._fetcher.get_events(origin, rv, sorted(event_ids - have))
        await self.store_outliers(room_id, fetched)

    async def store_outliers(self, room_id: str, events: Iterable[Event],
                             known: Optional[Mapping[str, Event]] = None,
                             resolve: Optional[Callable[[Event], Awaitable[Optional[Event]]]] = None) -> list[Event]:
        """Auth-check events against their own auth events (oldest first) and store them as outliers.

        ``known``: events (e.g. the rest of a send_join answer) to find auth events in
        before the database.  ``resolve``: for events (of ``events`` and ``known``) whose
        signatures are not verified yet, the event to use (redacted if its content hash
        fails) or None if it must be dropped; called when an event is first needed,
        oldest first, so the checks of later events overlap the writes of earlier ones.
        Large batches are written in chunks of ``OUTLIER_CHUNK``, each started once checked,
        while the next is checked.  Returns the stored events.
        """
        pending = sorted((e for e in events if e.room_id == room_id or e.type == "m.room.create"),
                         key=lambda e: (e.depth, e.event_id))
        pool: dict[str, Event] = dict(known or {})
        pool.update((e.event_id, e) for e in pending)
        resolved: dict[str, Optional[Event]] = {}

        async def usable(ev: Event) -> Optional[Event]:
            if resolve is None:
                return ev
            if ev.event_id not in resolved:
                resolved[ev.event_id] = await resolve(ev)
            return resolved[ev.event_id]

        stored: list[Event] = []
        writes = _BackgroundWrites(self._received.persist_outliers)
        try:
            await self._check_outliers(room_id, pending, pool, usable, stored, writes)
        except BaseException:
            await writes.wait(quietly=True)  # nothing left writing behind the caller's back
            raise
        await writes.wait()
        return stored

    async def _check_outliers(self, room_id: str, pending: list[Event], pool: Mapping[str, Event],
                              usable: Callable[[Event], Awaitable[Optional[Event]]], stored: list[Event],
                              writes: "_BackgroundWrites") -> None:
        """``store_outliers``' checks, in order; each full chunk of ``stored`` is handed to ``writes``."""
        checked: dict[str, Event] = {}
        derived_create: object = _UNSET
        for candidate in pending:
            maybe = await usable(candidate)
            if maybe is None:
                continue
            ev = maybe
            ev.internal_metadata.outlier = True
            auth = {}
            missing_auth = []
            for aid in ev.auth_event_ids():
                a = checked.get(aid)
                if a is None and aid in pool:
                    a = await usable(pool[aid])
                if a is None:
                    a = await self._events.get_event(aid)
                    if a is not None:
                        checked[aid] = a  # stored already: the room's create and power levels, cited by many
                if a is None:
                    missing_auth.append(aid)
                else:
                    auth[aid] = a
            if missing_auth:
                ev.internal_metadata.rejected_reason = f"missing auth events {missing_auth[:3]}"
            elif any(a.rejected for a in auth.values()):
                ev.internal_metadata.rejected_reason = "an auth event is rejected"
            else:
                if ev.room_version.room_id_is_create_event_hash:
                    # Not among the auth events in these rooms: the same one for the whole batch.
                    if derived_create is _UNSET:
                        derived_create = await self._create_event(ev.room_version, room_id, (), pool, usable)
                    create = cast(Optional[Event], derived_create)
                else:
                    create = await self._create_event(ev.room_version, room_id, auth.values(), pool, usable)
                try:
                    check_state_independent_auth_rules(ev.room_version, ev, auth, create_event=create)
                    check_state_dependent_auth_rules(ev.room_version, ev, _by_key(auth.values()),
                                                     create_event=create)
                except AuthError as e:
                    ev.internal_metadata.rejected_reason = f"auth: {e.msg}"
            checked[ev.event_id] = ev
            stored.append(ev)
            if len(stored) % OUTLIER_CHUNK == 0:
                writes.add(stored[-OUTLIER_CHUNK:])
        writes.add(stored[len(stored) - len(stored) % OUTLIER_CHUNK:])

    # -- auth ------------------------------------------------------------------------

    async def _create_event(self, rv: RoomVersion, room_id: str, candidates: Iterable[Event],
                            pool: Optional[Mapping[str, Event]] = None,
                            usable: Optional[Callable[[Event], Awaitable[Optional[Event]]]] = None
                            ) -> Optional[Event]:
        """The room's create event: among ``candidates``, else the (derived) one in ``pool``, else stored.

        ``usable``: the verified event for one of ``pool`` (None: it was dropped).
        """
        for ev in candidates:
            if ev.type == "m.room.create" and ev.state_key == "":
                return ev
        if rv.room_id_is_create_event_hash:
            create_id = "$" + room_id[1:]
            if pool is not None and create_id in pool:
                found = await usable(pool[create_id]) if usable is not None else pool[create_id]
                if found is not None:
                    return found
            return await self._events.get_event(create_id)
        if pool is not None:
            for ev in pool.values():
                if ev.type == "m.room.create" and ev.room_id == room_id:
                    found = await usable(ev) if usable is not None else ev
                    if found is not None:
                        return found
        current_id = await self._current.get_current_state_event_id(room_id, "m.room.create", "")
        return await self._events.get_event(current_id) if current_id is not None else None

    async def _auth_events_of(self, origin: str, event: Event) -> dict[str, Event]:
        ids = event.auth_event_ids()
        found = await self._events.get_events(ids)
        if len(found) < len(set(ids)):
            chain = await self._fetcher.get_event_auth(origin, event.room_version, event.room_id, event.event_id)
            have = await self._events.have_seen_events([e.event_id for e in chain])
            await self.store_outliers(event.room_id, [e for e in chain if e.event_id not in have])
            found = await self._events.get_events(ids)
        return found

    async def _check_auth(self, origin: str, event: Event, state_before: StateMap, partial: bool = False) -> None:
        rv = event.room_version
        auth_events = await self._auth_events_of(origin, event)
        missing = [a for a in event.auth_event_ids() if a not in auth_events]
        if missing:
            event.internal_metadata.rejected_reason = f"missing auth events {missing[:3]}"
            return
        if any(a.rejected for a in auth_events.values()):
            event.internal_metadata.rejected_reason = "an auth event is rejected"
            return
        keys = set(auth_types_for_event(rv, event)) | {CREATE_KEY}
        state_events = await self._state_calc.load_state_events(state_before, keys)
        if partial:
            _complete_from_auth_events(state_events, state_before, auth_events.values())
        create = await self._create_event(rv, event.room_id, [*auth_events.values(), *state_events.values()])
        try:
            check_state_independent_auth_rules(rv, event, auth_events, create_event=create)
            check_state_dependent_auth_rules(rv, event, state_events, create_event=create)
        except AuthError as e:
            event.internal_metadata.rejected_reason = f"auth: {e.msg}"

    async def _check_soft_fail(self, event: Event, state_before: StateMap, partial: bool = False) -> None:
        """Check against the room's state as it will be: the other extremities' states and the event's, resolved."""
        current = await self._current.get_current_state_ids(event.room_id)
        if not current or dict(current) == dict(state_before):
            return
        rv = event.room_version
        extremities = set(await self._events.get_latest_event_ids_in_room(event.room_id))
        against: StateMap = current
        if not extremities <= set(event.prev_event_ids()):
            against = await self._state_calc.resolve_with_extremities(
                event.room_id, rv, sorted(extremities - set(event.prev_event_ids())), state_before
            )
        keys = set(auth_types_for_event(rv, event)) | {CREATE_KEY}
        state_events = await self._state_calc.load_state_events(against, keys)
        if partial:
            auth_events = await self._events.get_events(event.auth_event_ids())
            _complete_from_auth_events(state_events, against, auth_events.values())
        create = state_events.get(CREATE_KEY) or await self._create_event(rv, event.room_id, [])
        try:
            check_state_dependent_auth_rules(rv, event, state_events, create_event=create)
        except AuthError as e:
            logger.info("soft-failing %s: %s", event.event_id, e.msg)
            event.internal_metadata.soft_failed = True


def _complete_from_auth_events(state_events: dict[StateKey, Event], state: StateMap,
                               auth_events: Iterable[Event]) -> None:
    """Partial state: the event's auth events stand in for the keys the state lacks (omitted members)."""
    for a in auth_events:
        if a.is_state() and a.state_key_tuple() not in state:
            state_events.setdefault(a.state_key_tuple(), a)


def _by_key(events: Iterable[Event]) -> dict[StateKey, Event]:
    return {e.state_key_tuple(): e for e in events if e.is_state()}


class _BackgroundWrites:
    """Writes started at once, in order, while the caller goes on.

    Each chunk goes to the database as soon as it is added, not when the one
    before has been reported written: the reactor thread, busy checking the next
    chunks, would hear of that only when its checks are done, and the writes
    would then run one after the other at the end. The database runs them in
    the order given (SQLite has one connection; outliers do not depend on each
    other's rows on PostgreSQL). ``wait`` returns once all are written and
    raises the first failure; chunks after a failed one may be stored, and a
    retry skips them as already seen.
    """

    def __init__(self, write: Callable[[list[Event]], Awaitable[None]]) -> None:
        self._write = write
        self._pending: list["defer.Deferred[None]"] = []

    def add(self, events: Sequence[Event]) -> None:
        if events:
            self._pending.append(defer.ensureDeferred(self._run(list(events))))

    async def _run(self, chunk: list[Event]) -> None:
        await self._write(chunk)

    async def wait(self, quietly: bool = False) -> None:
        """Until every write started has finished (``quietly``: their failures are only logged)."""
        pending, self._pending = self._pending, []
        first: Optional[BaseException] = None
        for d in pending:
            try:
                await d
            except Exception as e:
                if quietly:
                    logger.exception("writing outliers failed")
                elif first is None:
                    first = e
        if first is not None:
            raise first
