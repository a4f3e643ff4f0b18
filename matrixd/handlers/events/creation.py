"""Creating this server's own events: build on the room's forward extremities,
cite the right auth events, check the full auth rules, persist.

Creation and persistence for one room are serialised by a per-room lock, so
each new event extends what the previous one left (the deepest
``MAX_PREV_EVENTS`` forward extremities).  Uncited extremities stay, so the
room's current state afterwards is the resolution of the states after all of
them (:meth:`EventCreationHandler.current_state_after`).

Message (non-state) events are group-committed: requests for a room queue up
while the room's lock is held, and whoever next takes the lock builds every
queued event in turn, each on the one before it (same state, as messages do
not change state), auth-checks each, and persists them together in one
transaction.  A request whose event fails validation or auth gets its own
error; the others go on.  Sequential senders see batches of one.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

import attrs
from signedjson.types import SigningKey
from twisted.internet import defer

from matrixd.api.errors import AuthError, MatrixError
from matrixd.events.builder import create_local_event
from matrixd.events.event import Event, StateKey, StateMap
from matrixd.events.room_versions import RoomVersion
from matrixd.events.validation import validate_client_event_fields, validate_pdu
from matrixd.handlers.events.persister import EventPersister, PersistedEvent
from matrixd.handlers.events.redaction_power import sender_can_redact_others
from matrixd.handlers.events.state_calc import StateAtPoint, StateCalculator
from matrixd.state.auth import auth_types_for_event, check_auth
from matrixd.storage.cache import LruCache
from matrixd.storage.events import EventStore
from matrixd.storage.rooms import RoomStore
from matrixd.util.clock import Clock
from matrixd.util.linearizer import Linearizer

# Forward extremities cited by one new event (the spec caps prev_events at 20).
MAX_PREV_EVENTS = 10
MAX_DEPTH = 2**63 - 1
#: Most queued message events persisted in one group commit.
MAX_GROUP_COMMIT = 100


@attrs.frozen(slots=True)
class EventSpec:
    """What a local event should say; the handler fills in the DAG and auth parts."""

    event_type: str
    sender: str
    content: Mapping[str, Any]
    state_key: Optional[str] = None
    redacts: Optional[str] = None
    # The client transaction that asked for the event (echoed to that device as unsigned.transaction_id).
    txn_id: Optional[str] = None
    device_id: Optional[str] = None
    #: Set by application services (``ts`` query parameter, "timestamp massaging"); default now.
    origin_server_ts: Optional[int] = None


class EventCreationHandler:
    def __init__(
        self,
        *,
        clock: Clock,
        server_name: str,
        signing_key: SigningKey,
        event_store: EventStore,
        rooms: RoomStore,
        state_calc: StateCalculator,
        persister: EventPersister,
        room_lock: Linearizer,
    ) -> None:
        self._clock = clock
        self._server_name = server_name
        self._signing_key = signing_key
        self._events = event_store
        self._rooms = rooms
        self._state_calc = state_calc
        self._persister = persister
        self._room_lock = room_lock
        # Group commit: message events waiting for their room's lock, and the rooms being drained.
        self._queued: dict[str, list[tuple[EventSpec, "defer.Deferred[PersistedEvent]"]]] = {}
        self._draining: set[str] = set()
        # The state after our own latest event in each room (state after an event
        # never changes), so the next event on it needs no state lookups. One per
        # room: only the latest can be the next event's single prev event.
        self._state_after: LruCache[str, tuple[str, StateAtPoint]] = LruCache(
            "state_after_local_events", 50_000, size_of=lambda entry: len(entry[1].state_ids)
        )

    @property
    def room_lock(self) -> Linearizer:
        return self._room_lock

    @property
    def persister(self) -> EventPersister:
        return self._persister

    async def send(self, room_id: str, spec: EventSpec) -> PersistedEvent:
        """Build, auth-check and persist ``spec`` in ``room_id`` (taking the room lock).

        Message events join the room's group commit (see the module docstring).
        Returns once the event is announced (after the lock is released), so
        the sender's next ``/sync`` shows it.
        """
        if spec.state_key is not None:
            async with self._room_lock.queue(room_id):
                persisted = await self.send_locked(room_id, spec)
        else:
            d: defer.Deferred[PersistedEvent] = defer.Deferred()
            self._queued.setdefault(room_id, []).append((spec, d))
            if room_id not in self._draining:
                self._draining.add(room_id)
                defer.ensureDeferred(self._drain(room_id))
            persisted = await d
        await self._persister.wait_announced(persisted.stream_ordering)
        return persisted

    async def _drain(self, room_id: str) -> None:
        """Take the room lock and group-commit what is queued, until nothing is."""
        try:
            while self._queued.get(room_id):
                async with self._room_lock.queue(room_id):
                    # Taken once the lock is ours, so what queued while we waited joins the batch.
                    queued = self._queued.get(room_id, [])
                    batch, rest = queued[:MAX_GROUP_COMMIT], queued[MAX_GROUP_COMMIT:]
                    if rest:
                        self._queued[room_id] = rest
                    else:
                        self._queued.pop(room_id, None)
                    try:
                        await self._send_batch_locked(room_id, batch)
                    except Exception as e:  # noqa: BLE001 - every waiter must hear of it
                        for _, d in batch:
                            _fail(d, e)
        finally:
            self._draining.discard(room_id)
            if self._queued.get(room_id):  # an exception escaped the loop; never strand waiters
                for _, d in self._queued.pop(room_id):
                    _fail(d, RuntimeError("event creation stopped"))

    async def _send_batch_locked(
        self, room_id: str, batch: list[tuple[EventSpec, "defer.Deferred[PersistedEvent]"]]
    ) -> None:
        """Build, auth-check and persist a batch of message events in one transaction (lock held)."""
        room_version = await self._rooms.get_room_version(room_id)
        prev_events = await self._prev_events(room_id)
        at = await self._state_after_events(room_id, room_version, prev_events)
        keys: set[StateKey] = set()
        for spec, _ in batch:
            keys |= self._auth_keys(room_version, room_id, spec)
        auth_state = await self._state_calc.load_state_events(at.state_ids, keys)
        built: list[tuple[Event, bool, defer.Deferred[PersistedEvent]]] = []
        for spec, d in batch:
            try:
                event = self.build_on(room_version, room_id, spec, prev_events, auth_state)
                redaction_authorised = False
                if event.type == "m.room.redaction":
                    redaction_authorised = await self._sender_can_redact_others(room_version, event, at.state_ids)
            except Exception as e:  # noqa: BLE001 - this request's own error
                _fail(d, e)
                continue
            built.append((event, redaction_authorised, d))
            prev_events = [event]
        if not built:
            return
        new_current = await self.current_state_after(room_id, room_version, built[0][0], built[-1][0], at.state_ids)
        persisted = await self._persister.persist_new_messages(
            [(ev, authorised) for ev, authorised, _ in built], at.state_ids, at.state_group,
            new_current_state=new_current,
        )
        self._remember_state_after(built[-1][0], at.state_ids, persisted[-1].state_group)
        for (_, _, d), result in zip(built, persisted):
            if not d.called:
                d.callback(result)

    async def send_locked(self, room_id: str, spec: EventSpec) -> PersistedEvent:
        """As :meth:`send`, for callers already holding the room lock."""
        room_version = await self._rooms.get_room_version(room_id)
        event, state_before, group_before = await self.build(room_id, room_version, spec)
        return await self.persist_built(room_version, event, state_before, group_before)

    async def persist_built(self, room_version: RoomVersion, event: Event, state_before: StateMap,
                            group_before: Optional[int]) -> PersistedEvent:
        """Persist an event from :meth:`build` (lock still held), updating the room's current state."""
        redaction_authorised = False
        if event.type == "m.room.redaction":
            redaction_authorised = await self._sender_can_redact_others(room_version, event, state_before)
        state_after = dict(state_before)
        if event.is_state():
            state_after[event.state_key_tuple()] = event.event_id
        new_current = await self.current_state_after(event.room_id, room_version, event, event, state_after)
        persisted = await self._persister.persist_new_event(
            event, state_before, group_before, new_current_state=new_current,
            redaction_authorised=redaction_authorised,
        )
        self._remember_state_after(event, state_before, persisted.state_group)
        return persisted

    def forget_state_after(self, event_ids: Iterable[str]) -> None:
        """These events' states were recomputed (a partial-state room resynced): drop the remembered ones."""
        ids = set(event_ids)
        self._state_after.invalidate_many(
            room_id for room_id, (event_id, _) in self._state_after.items_snapshot().items() if event_id in ids)

    async def current_state_after(self, room_id: str, room_version: RoomVersion, first: Event, last: Event,
                                  state_after: StateMap) -> Optional[StateMap]:
        """The room's current state once the chain ``first`` .. ``last`` is persisted (lock held).

        ``first`` cites some forward extremities (at most ``MAX_PREV_EVENTS``);
        the uncited ones stay extremities, so the room's state becomes the
        resolution of the states after them and ``state_after`` (the state
        after ``last``), as a later merge event will compute it.  When every
        extremity is cited the room's state is ``state_after``; None when that
        cannot differ from the current state (a message on a single
        extremity), so the common case reads nothing more.
        """
        cited = first.prev_event_ids()
        uncited = set(await self._events.get_latest_event_ids_in_room(room_id)) - set(cited)
        if uncited:
            return await self._state_calc.resolve_with_extremities(
                room_id, room_version, sorted(uncited), state_after, {last.event_id: last}
            )
        if last.is_state() or len(cited) > 1:
            return state_after
        return None

    def _remember_state_after(self, event: Event, state_before: StateMap, group_after: Optional[int]) -> None:
        if event.rejected or group_after is None:
            return
        state_after = state_before
        if event.is_state():
            state_after = {**state_before, event.state_key_tuple(): event.event_id}
        self._state_after.set(event.room_id, (event.event_id, StateAtPoint(state_after, group_after)))

    async def _state_after_events(self, room_id: str, room_version: RoomVersion,
                                  prev_events: list[Event]) -> StateAtPoint:
        key = sorted(e.event_id for e in prev_events)
        cached = self._state_after.get(room_id) if len(key) == 1 else None
        if cached is not None and cached[0] == key[0]:
            return cached[1]
        return await self._state_calc.state_after_events(room_id, room_version, key)

    async def build(
        self, room_id: str, room_version: RoomVersion, spec: EventSpec
    ) -> tuple[Event, StateMap, Optional[int]]:
        """Build and fully auth-check an event on the room's current extremities (lock held)."""
        prev_events = await self._prev_events(room_id)
        at = await self._state_after_events(room_id, room_version, prev_events)
        auth_state = await self._state_calc.load_state_events(at.state_ids, self._auth_keys(room_version, room_id, spec))
        event = self.build_on(room_version, room_id, spec, prev_events, auth_state)
        return event, at.state_ids, at.state_group

    async def _prev_events(self, room_id: str) -> list[Event]:
        """The forward extremities a new event cites (the deepest MAX_PREV_EVENTS of them)."""
        prev_ids = await self._events.get_latest_event_ids_in_room(room_id)
        prev_events = list((await self._events.get_events(prev_ids)).values())
        if len(prev_events) > MAX_PREV_EVENTS:
            prev_events.sort(key=lambda e: e.depth, reverse=True)
            prev_events = prev_events[:MAX_PREV_EVENTS]
        return prev_events

    def _auth_keys(self, room_version: RoomVersion, room_id: str, spec: EventSpec) -> set[StateKey]:
        draft = Event(
            {"type": spec.event_type, "sender": spec.sender, "content": dict(spec.content), "room_id": room_id,
             **({"state_key": spec.state_key} if spec.state_key is not None else {})},
            room_version, event_id="$draft",
        )
        return set(auth_types_for_event(room_version, draft)) | {("m.room.create", "")}

    def build_on(
        self,
        room_version: RoomVersion,
        room_id: str,
        spec: EventSpec,
        prev_events: list[Event],
        state_events: Mapping[StateKey, Event],
    ) -> Event:
        """Build an event on ``prev_events`` whose state is ``state_events`` and auth-check it.

        ``state_events`` needs at least the keys the auth rules read for this
        event (more is fine).  Pure: nothing is read or written.
        """
        validate_client_event_fields(room_version, spec.event_type, spec.state_key, dict(spec.content))
        depth = min(MAX_DEPTH, max((e.depth for e in prev_events), default=0) + 1)
        keys = self._auth_keys(room_version, room_id, spec)
        auth_state = {k: state_events[k] for k in keys if k in state_events}
        create_event = auth_state.get(("m.room.create", ""))
        cited = [auth_state[k] for k in keys if k in auth_state
                 and not (k == ("m.room.create", "") and room_version.room_id_is_create_event_hash)]
        ts = spec.origin_server_ts if spec.origin_server_ts is not None else self._clock.time_msec()
        event = create_local_event(
            room_version,
            event_type=spec.event_type,
            sender=spec.sender,
            room_id=room_id,
            content=spec.content,
            state_key=spec.state_key,
            prev_events=prev_events,
            auth_events=cited,
            depth=depth,
            origin_server_ts=ts,
            server_name=self._server_name,
            signing_key=self._signing_key,
            redacts=spec.redacts,
        )
        validate_pdu(room_version, event.get_pdu_json())
        check_auth(room_version, event, auth_state, create_event=create_event)
        if spec.txn_id is not None:
            event.internal_metadata.txn_id = spec.txn_id
            event.internal_metadata.device_id = spec.device_id
        return event

    def build_create_event(
        self, room_version: RoomVersion, creator: str, create_content: Mapping[str, Any], room_id: Optional[str],
        ts_offset_ms: int = 0,
    ) -> Event:
        """Build a room's ``m.room.create`` event.

        ``ts_offset_ms`` moves its timestamp: in v12+ the room id is the event's
        hash, so two identical requests in the same millisecond would otherwise
        name the same room.
        """
        event = create_local_event(
            room_version,
            event_type="m.room.create",
            sender=creator,
            room_id=None if room_version.room_id_is_create_event_hash else room_id,
            content=create_content,
            state_key="",
            prev_events=[],
            auth_events=[],
            depth=1,
            origin_server_ts=self._clock.time_msec() + ts_offset_ms,
            server_name=self._server_name,
            signing_key=self._signing_key,
        )
        validate_pdu(room_version, event.get_pdu_json())
        check_auth(room_version, event, {})
        return event

    async def persist_create_event(self, event: Event) -> PersistedEvent:
        return await self._persister.persist_new_event(event, {}, None)

    async def _sender_can_redact_others(self, room_version: RoomVersion, event: Event, state: StateMap) -> bool:
        """Whether the redaction's sender reaches the redact level (needed to redact others' events)."""
        return await sender_can_redact_others(self._state_calc, room_version, event, state)


def _fail(d: "defer.Deferred[PersistedEvent]", err: BaseException) -> None:
    if not d.called:
        d.errback(err)


def invalid_room_state_error(err: AuthError) -> MatrixError:
    """createRoom reports initial events the auth rules refuse as M_INVALID_ROOM_STATE."""
    return MatrixError(400, f"Invalid initial room state: {err.msg}", "M_INVALID_ROOM_STATE")
