"""Persisting events: the one writer of the event, DAG, membership and current-state tables.

Only the process that owns event persistence (the master) builds an
:class:`EventWriter`; every other process reads with
:class:`matrixd.storage.events.EventStore` and friends.

Stream orderings are allocated here, not by the caller: ``persist_events``
takes ids from the events stream generator (or the backfill generator, which
counts down from -1), writes everything in one transaction, and only returns
once the ids are finished, so afterwards the generator's current token covers
the new events (unless an earlier write is still in flight) and the caller can
announce it.  Post-commit cache invalidation happens before that.

What the caller decides (it has the state resolution and auth results): each
event's state groups and flags (:class:`EventContext`), and the change to each
room's current state (:class:`StateDelta`).  What this store derives itself:
forward extremities (the DAG's leaves among accepted timeline events),
backward extremities (missing prev events), memberships and the redaction index.
The caller must not persist two batches for the same room concurrently with
state deltas computed from the same starting state; retries keep the tables
consistent, but only the caller can keep its deltas meaningful.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping, Optional, Sequence

from matrixd.events.event import Event, StateKey
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.database import Cursor, Database
from matrixd.storage.events import EventStore
from matrixd.storage.models import (
    CurrentStateChange, CurrentStateDeltaRow, EventContext, EventStreamRow, PersistResult, StateDelta,
)
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, in_list_clause
from matrixd.storage.streams import StreamIdGenerator
from matrixd.types import IdentifierError, get_domain_from_id
from matrixd.util.clock import Clock

_METADATA_COLUMNS = ("outlier", "rejected_reason", "soft_failed", "stream_ordering")


async def create_event_stream_generators(db: Database) -> tuple[StreamIdGenerator, StreamIdGenerator]:
    """The events stream (counting up) and backfill stream (counting down) generators.

    The events stream also numbers ``current_state_delta_stream`` rows, which
    may use an id no event kept (a batch of duplicates), so allocation must
    resume after both tables' maxima.
    """
    stream_ids = await StreamIdGenerator.create(
        db, "events", "stream_ordering", extra_tables=[("current_state_delta_stream", "stream_id")]
    )
    backfill_ids = await StreamIdGenerator.create(db, "events", "stream_ordering", step=-1)
    return stream_ids, backfill_ids


#: Rows of another area written in the events' own transaction, given the stream orderings of the
#: events actually written (event id -> stream ordering); see ``persist_events(extra_writes=)``.
ExtraTxnWrites = Callable[[Cursor, Mapping[str, int]], None]


class EventWriter:
    """Writes events and everything derived from them, in one transaction per batch.

    Args:
        db, clock: as for every store.
        server_name: this server's name; decides which users are local.
        stream_ids, backfill_ids: from :func:`create_event_stream_generators`.
        event_store, current_state_store: whose caches to invalidate after commit.
        writes_here: False where the room core is built only to read (a worker): the stores'
            writer-side caches stay off, so replication's invalidations keep them true, and
            :meth:`persist_events` refuses, since the master is the only writer.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        server_name: str,
        stream_ids: StreamIdGenerator,
        backfill_ids: StreamIdGenerator,
        event_store: EventStore,
        current_state_store: CurrentStateStore,
        writes_here: bool = True,
    ) -> None:
        if stream_ids.step != 1 or backfill_ids.step != -1:
            raise ValueError("stream_ids must count up and backfill_ids down")
        self._db = db
        self._clock = clock
        self._server_name = server_name
        self._stream_ids = stream_ids
        self._backfill_ids = backfill_ids
        self._event_store = event_store
        self._current_state = current_state_store
        self._writes_here = writes_here
        if writes_here:
            event_store.enable_writer_caches()
            current_state_store.enable_writer_caches()

    @property
    def event_store(self) -> EventStore:
        return self._event_store

    async def persist_events(
        self,
        events_and_contexts: Sequence[tuple[Event, EventContext]],
        *,
        backfilled: bool = False,
        state_delta_by_room: Optional[Mapping[str, StateDelta]] = None,
        extra_writes: Optional[ExtraTxnWrites] = None,
        in_same_txn: Optional[Callable[[Cursor, int], None]] = None,
    ) -> PersistResult:
        """Store a batch of events (and current state changes) atomically.

        Events already stored are skipped, except that an event stored as an
        outlier and now given as a timeline event (not outlier) joins the
        timeline with a new stream ordering.  Backfilled events update neither
        forward extremities nor current state.  On success each written event's
        ``internal_metadata.stream_ordering`` is set.

        Args:
            events_and_contexts: events with their contexts; their
                ``internal_metadata`` says outlier / rejected / soft-failed.
            backfilled: the events are history fetched from another server.
            state_delta_by_room: each room's current state change; the events
                it names must be stored already or be in this batch.
            extra_writes: run last in the same transaction with the orderings of
                the events written (not called if none was): the push actions of
                an event commit with it, saving a transaction per event.
            in_same_txn: run last in the same transaction with the batch's
                highest stream id (always called): what must become visible at
                exactly that position, e.g. the end of a room's partial state.
        """
        if not self._writes_here:
            raise RuntimeError("events are written by the master; this process only reads them")
        deltas = {r: d for r, d in (state_delta_by_room or {}).items() if not d.is_empty()}
        if backfilled and deltas:
            raise ValueError("backfilled events cannot change current state")
        unique: dict[str, tuple[Event, EventContext]] = {}
        for ev, ctx in events_and_contexts:
            unique.setdefault(ev.event_id, (ev, ctx))
        batch = list(unique.values())
        generator = self._backfill_ids if backfilled else self._stream_ids
        now = self._clock.time_msec()
        with generator.get_next_mult(max(1, len(batch))) as ids:
            orderings = {ev.event_id: so for (ev, _), so in zip(batch, ids)}
            written, invalidations = await self._db.run_interaction(
                "persist_events", self._persist_txn, batch, orderings, backfilled, deltas, ids[-1], now,
                extra_writes, in_same_txn,
            )
            for ev, _ in batch:
                if ev.event_id in written:
                    ev.internal_metadata.stream_ordering = written[ev.event_id]
            # Caches first, then (leaving the with-block) the stream position: a
            # reader woken at the new position must not see stale cached data.
            self._run_invalidations(invalidations)
            self._current_state.written_by_writer([] if backfilled else ids, invalidations.delta_rows)
            self._event_store.written_by_writer(
                [] if backfilled else ids,
                [] if backfilled else [
                    EventStreamRow(written[ev.event_id], ev.event_id, ev.room_id, ev.type, ev.state_key, ev.sender,
                                   bool(ev.internal_metadata.outlier))
                    for ev, _ in batch if ev.event_id in written
                ],
                invalidations.moved_orderings,
                invalidations.extremities,
                # Fresh events are cached as stored; outliers promoted were invalidated above.
                [ev for ev, _ in batch if ev.event_id in written and ev.event_id in invalidations.fresh],
                [] if backfilled else [
                    ev for ev, _ in batch
                    if ev.event_id in written and not ev.internal_metadata.outlier and not ev.rejected
                    and not ev.internal_metadata.soft_failed
                ],
            )
        return PersistResult(stream_orderings=written, max_stream_ordering=ids[-1])

    def _run_invalidations(self, inv: "_Invalidations") -> None:
        if inv.event_ids:
            self._event_store.invalidate_written(inv.event_ids)
        for room_id in inv.rooms:
            change = inv.state_changes.get(room_id)
            if change is None:
                self._current_state.invalidate_room(room_id)
            else:
                self._current_state.apply_state_change(room_id, change)
        if inv.users:
            self._current_state.invalidate_users(inv.users)

    # -- the transaction ----------------------------------------------------------

    @staticmethod
    def _client_txn_ids_txn(txn: Cursor, new: list[tuple[Event, EventContext]], now: int) -> None:
        """Record client transaction ids in the event's own transaction, so a client retrying
        after a crash finds the event instead of creating a second one."""
        rows = [
            (ev.sender, ev.internal_metadata.device_id or "", ev.internal_metadata.txn_id, ev.room_id,
             ev.event_id, now)
            for ev, _ in new
            if ev.internal_metadata.txn_id is not None
        ]
        if rows:
            txn.executemany(
                "INSERT INTO event_txn_ids (user_id, device_id, txn_id, room_id, event_id, inserted_ts)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, device_id, txn_id) DO NOTHING",
                rows,
            )

    def _persist_txn(
        self,
        txn: Cursor,
        batch: list[tuple[Event, EventContext]],
        orderings: dict[str, int],
        backfilled: bool,
        deltas: Mapping[str, StateDelta],
        delta_stream_id: int,
        now: int,
        extra_writes: Optional[ExtraTxnWrites] = None,
        in_same_txn: Optional[Callable[[Cursor, int], None]] = None,
    ) -> tuple[dict[str, int], "_Invalidations"]:
        inv = _Invalidations()
        existing: dict[str, bool] = {}
        old_orderings: dict[str, int] = {}
        for chunk in batch_iter([ev.event_id for ev, _ in batch], IN_LIST_BATCH):
            clause, args = in_list_clause(txn.engine, "event_id", chunk)
            txn.execute(f"SELECT event_id, outlier, stream_ordering FROM events WHERE {clause}", args)
            for event_id, outlier, stream_ordering in txn:
                existing[event_id] = bool(outlier)
                if outlier and stream_ordering is not None:
                    old_orderings[event_id] = int(stream_ordering)

        new: list[tuple[Event, EventContext]] = []
        promoted: list[tuple[Event, EventContext]] = []
        for ev, ctx in batch:
            if ev.event_id not in existing:
                new.append((ev, ctx))
            elif existing[ev.event_id] and not ev.internal_metadata.outlier:
                promoted.append((ev, ctx))

        self._insert_events_txn(txn, new, orderings, now)
        self._client_txn_ids_txn(txn, new, now)
        self._promote_outliers_txn(txn, promoted, orderings)
        inv.event_ids.update(ev.event_id for ev, _ in promoted)
        inv.moved_orderings.extend(old_orderings[ev.event_id] for ev, _ in promoted if ev.event_id in old_orderings)
        # A new event is cached as written unless a redaction of it is already stored.
        inv.fresh.update(ev.event_id for ev, _ in new)
        if new:
            targets = [ev.event_id for ev, _ in new]
            for chunk in batch_iter(targets, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "redacts", chunk)
                txn.execute(f"SELECT redacts FROM redactions WHERE {clause}", args)
                inv.fresh.difference_update(r[0] for r in txn)
        inv.event_ids.update(ev.redacts for ev, _ in new if ev.redacts is not None and not ev.rejected)

        timeline = [ev for ev, _ in new + promoted if not ev.internal_metadata.outlier]
        by_room: dict[str, list[Event]] = {}
        for ev in timeline:
            by_room.setdefault(ev.room_id, []).append(ev)
        for room_id, room_events in by_room.items():
            accepted = [e for e in room_events if not e.rejected and not e.internal_metadata.soft_failed]
            if not backfilled:
                extremities = _update_forward_extremities_txn(txn, room_id, accepted)
                if extremities is not None:
                    inv.extremities[room_id] = extremities
            _update_backward_extremities_txn(txn, room_id, accepted)

        self._out_of_band_memberships_txn(txn, new, orderings, inv)
        for room_id, delta in deltas.items():
            self._apply_state_delta_txn(txn, room_id, delta, delta_stream_id, inv)
        written = {ev.event_id: orderings[ev.event_id] for ev, _ in new + promoted}
        if extra_writes is not None and written:
            extra_writes(txn, written)
        if in_same_txn is not None:
            in_same_txn(txn, delta_stream_id)
        return written, inv

    def _insert_events_txn(
        self, txn: Cursor, new: list[tuple[Event, EventContext]], orderings: dict[str, int], now: int
    ) -> None:
        if not new:
            return
        txn.execute_batch(
            "INSERT INTO events (event_id, room_id, type, state_key, sender, stream_ordering,"
            " topological_ordering, origin_server_ts, received_ts, outlier, rejected_reason, soft_failed)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    ev.event_id, ev.room_id, ev.type, ev.state_key, ev.sender, orderings[ev.event_id],
                    int(ev.depth), int(ev.origin_server_ts), now, bool(ev.internal_metadata.outlier),
                    ev.internal_metadata.rejected_reason, bool(ev.internal_metadata.soft_failed),
                )
                for ev, _ in new
            ],
        )
        txn.execute_batch(
            "INSERT INTO event_json (event_id, room_id, room_version, internal_metadata, json)"
            " VALUES (?, ?, ?, ?, ?)",
            (  # a generator: each event's JSON is built as its row is sent, not all at once
                (ev.event_id, ev.room_id, ev.room_version.identifier, _metadata_json(ev),
                 json.dumps(ev.get_pdu_json(), separators=(",", ":")))
                for ev, _ in new
            ),
        )
        txn.execute_batch(
            "INSERT INTO event_edges (event_id, prev_event_id, room_id) VALUES (?, ?, ?)"
            " ON CONFLICT (event_id, prev_event_id) DO NOTHING",
            [(ev.event_id, p, ev.room_id) for ev, _ in new for p in ev.prev_event_ids()],
        )
        txn.execute_batch(
            "INSERT INTO event_auth (event_id, auth_id, room_id) VALUES (?, ?, ?)"
            " ON CONFLICT (event_id, auth_id) DO NOTHING",
            [(ev.event_id, a, ev.room_id) for ev, _ in new for a in ev.auth_event_ids()],
        )
        txn.execute_batch(
            "INSERT INTO redactions (event_id, redacts, authorised, received_ts) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (event_id) DO NOTHING",
            [
                (ev.event_id, ev.redacts, ctx.redaction_authorised, now)
                for ev, ctx in new
                if ev.redacts is not None and not ev.rejected
            ],
        )
        txn.execute_batch(
            "INSERT INTO room_memberships (event_id, user_id, sender, room_id, membership, displayname,"
            " avatar_url, stream_ordering) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (ev.event_id, ev.state_key, ev.sender, ev.room_id, ev.membership,
                 _str_or_none(ev.content.get("displayname")), _str_or_none(ev.content.get("avatar_url")),
                 orderings[ev.event_id])
                for ev, _ in new
                if _is_membership(ev)
            ],
        )
        _insert_state_groups_txn(txn, new)

    def _promote_outliers_txn(
        self, txn: Cursor, promoted: list[tuple[Event, EventContext]], orderings: dict[str, int]
    ) -> None:
        """Outliers given again as timeline events join the timeline at a new position."""
        if not promoted:
            return
        txn.execute_batch(
            "UPDATE events SET outlier = FALSE, stream_ordering = ?, rejected_reason = ?, soft_failed = ?"
            " WHERE event_id = ?",
            [
                (orderings[ev.event_id], ev.internal_metadata.rejected_reason,
                 bool(ev.internal_metadata.soft_failed), ev.event_id)
                for ev, _ in promoted
            ],
        )
        txn.execute_batch(
            "UPDATE event_json SET internal_metadata = ? WHERE event_id = ?",
            [(_metadata_json(ev), ev.event_id) for ev, _ in promoted],
        )
        txn.execute_batch(
            "UPDATE room_memberships SET stream_ordering = ? WHERE event_id = ?",
            [(orderings[ev.event_id], ev.event_id) for ev, _ in promoted if _is_membership(ev)],
        )
        _insert_state_groups_txn(txn, promoted)

    def _out_of_band_memberships_txn(
        self, txn: Cursor, new: list[tuple[Event, EventContext]], orderings: dict[str, int], inv: "_Invalidations"
    ) -> None:
        rows = [
            (ev.room_id, ev.state_key, ev.event_id, ev.membership, orderings[ev.event_id])
            for ev, ctx in new
            if ctx.out_of_band_membership and _is_membership(ev) and self._is_mine(ev.state_key)
        ]
        _upsert_local_membership_txn(txn, rows)
        inv.users.update(r[1] for r in rows if r[1] is not None)

    def _apply_state_delta_txn(
        self, txn: Cursor, room_id: str, delta: StateDelta, stream_id: int, inv: "_Invalidations"
    ) -> None:
        keys = set(delta.to_delete) | set(delta.to_insert)
        previous = _previous_current_state_txn(txn, room_id, keys)

        # Membership (and existence) of the events the state will point at.
        members: dict[str, tuple[str, int]] = {}
        stored: set[str] = set()
        new_ids = sorted(set(delta.to_insert.values()))
        for chunk in batch_iter(new_ids, IN_LIST_BATCH):
            clause, args = in_list_clause(txn.engine, "e.event_id", chunk)
            txn.execute(
                "SELECT e.event_id, m.membership, m.stream_ordering FROM events e"
                f" LEFT JOIN room_memberships m ON m.event_id = e.event_id WHERE {clause}",
                args,
            )
            for event_id, membership, stream_ordering in txn:
                stored.add(event_id)
                if membership is not None:
                    members[event_id] = (membership, int(stream_ordering))
        unknown = set(new_ids) - stored
        if unknown:
            raise ValueError(f"current state of {room_id} would name unstored events: {sorted(unknown)[:5]}")

        deletes = [(t, sk) for t, sk in sorted(delta.to_delete) if (t, sk) in previous]
        txn.execute_batch(
            "DELETE FROM current_state_events WHERE room_id = ? AND type = ? AND state_key = ?",
            [(room_id, t, sk) for t, sk in deletes],
        )
        inserts = sorted((k, v) for k, v in delta.to_insert.items() if previous.get(k) != v)
        txn.execute_batch(
            "INSERT INTO current_state_events (room_id, type, state_key, event_id, membership)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id, type, state_key)"
            " DO UPDATE SET event_id = EXCLUDED.event_id, membership = EXCLUDED.membership",
            [
                (room_id, t, sk, eid, members[eid][0] if t == "m.room.member" and eid in members else None)
                for (t, sk), eid in inserts
            ],
        )
        delta_rows = [(stream_id, room_id, t, sk, None, previous[(t, sk)]) for t, sk in deletes] + [
            (stream_id, room_id, t, sk, eid, previous.get((t, sk))) for (t, sk), eid in inserts
        ]
        txn.execute_batch(
            "INSERT INTO current_state_delta_stream"
            " (stream_id, room_id, type, state_key, event_id, prev_event_id) VALUES (?, ?, ?, ?, ?, ?)",
            delta_rows,
        )
        inv.delta_rows.extend(CurrentStateDeltaRow(*r) for r in delta_rows)

        changed_members = [sk for t, sk in deletes if t == "m.room.member"]
        changed_members += [sk for (t, sk), _ in inserts if t == "m.room.member"]
        local_rows = [
            (room_id, sk, eid, members[eid][0], members[eid][1])
            for (t, sk), eid in inserts
            if t == "m.room.member" and eid in members and self._is_mine(sk)
        ]
        _upsert_local_membership_txn(txn, local_rows)
        txn.execute_batch(
            "DELETE FROM local_current_membership WHERE room_id = ? AND user_id = ?",
            [(room_id, sk) for t, sk in deletes if t == "m.room.member" and self._is_mine(sk)],
        )
        if deletes or inserts:
            inv.rooms.add(room_id)
            inv.state_changes[room_id] = CurrentStateChange(
                previous={k: previous.get(k) for k in [*deletes, *(k for k, _ in inserts)]},
                inserted=dict(inserts),
                joined={
                    sk: t == "m.room.member" and eid in members and members[eid][0] == "join"
                    for (t, sk), eid in [*((k, "") for k in deletes), *inserts] if t == "m.room.member"
                },
            )
        inv.users.update(changed_members)

    def _is_mine(self, user_id: Optional[str]) -> bool:
        if user_id is None:
            return False
        try:
            return get_domain_from_id(user_id) == self._server_name
        except IdentifierError:
            return False


class _Invalidations:
    """Caches to clear once the transaction has committed."""

    def __init__(self) -> None:
        self.event_ids: set[str] = set()
        self.rooms: set[str] = set()
        self.users: set[str] = set()
        #: Writer-side caches to update: rooms' forward extremities, ids whose
        #: event moved away, and new events safe to cache as written.
        self.extremities: dict[str, list[str]] = {}
        self.moved_orderings: list[int] = []
        self.fresh: set[str] = set()
        self.delta_rows: list[CurrentStateDeltaRow] = []
        #: Each room's current state change, to update its cached state and members in place.
        self.state_changes: dict[str, CurrentStateChange] = {}


#: Up to this many changed keys are looked up one by one; more, by their types.
_KEYS_LOOKED_UP_SINGLY = 32


def _previous_current_state_txn(txn: Cursor, room_id: str, keys: set[StateKey]) -> dict[StateKey, str]:
    """The current state event ids of ``keys`` (those set) before a change.

    A few keys (a join, a message's state change) are read by key, so a join to
    a room of thousands does not read every member's row.
    """
    if len(keys) <= _KEYS_LOOKED_UP_SINGLY:
        ordered = sorted(keys)
        clause = " OR ".join(["(type = ? AND state_key = ?)"] * len(ordered))
        txn.execute(
            f"SELECT type, state_key, event_id FROM current_state_events WHERE room_id = ? AND ({clause})",
            [room_id, *(part for key in ordered for part in key)],
        )
        return {(t, sk): eid for t, sk, eid in txn}
    clause, args = in_list_clause(txn.engine, "type", sorted({t for t, _ in keys}))
    txn.execute(
        f"SELECT type, state_key, event_id FROM current_state_events WHERE room_id = ? AND {clause}",
        [room_id, *args],
    )
    return {(t, sk): eid for t, sk, eid in txn if (t, sk) in keys}


def _insert_state_groups_txn(txn: Cursor, events: list[tuple[Event, EventContext]]) -> None:
    txn.execute_batch(
        "INSERT INTO event_to_state_groups (event_id, state_group, state_group_before) VALUES (?, ?, ?)"
        " ON CONFLICT (event_id) DO UPDATE SET state_group = EXCLUDED.state_group,"
        " state_group_before = EXCLUDED.state_group_before",
        [
            (ev.event_id, ctx.state_group, ctx.state_group_before)
            for ev, ctx in events
            if ctx.state_group is not None and not ev.internal_metadata.outlier
        ],
    )


def _update_forward_extremities_txn(txn: Cursor, room_id: str, accepted: list[Event]) -> Optional[list[str]]:
    """Leaves of the DAG: new accepted events replace the prev events they reference.

    Returns the room's extremities now (None if no accepted events were given).
    """
    if not accepted:
        return None
    txn.execute("SELECT event_id FROM event_forward_extremities WHERE room_id = ?", (room_id,))
    old = {r[0] for r in txn}
    new_ids = [e.event_id for e in accepted]
    candidates = old | set(new_ids)
    for ev in accepted:
        candidates.difference_update(ev.prev_event_ids())
    # An event that arrives after one referencing it (out of order) is not a leaf.
    referenced: set[str] = set()
    for chunk in batch_iter(new_ids, IN_LIST_BATCH):
        clause, args = in_list_clause(txn.engine, "ed.prev_event_id", chunk)
        txn.execute(
            "SELECT ed.prev_event_id FROM event_edges ed JOIN events ev ON ev.event_id = ed.event_id"
            f" WHERE {clause} AND NOT ev.outlier AND ev.rejected_reason IS NULL AND NOT ev.soft_failed",
            args,
        )
        referenced.update(r[0] for r in txn)
    candidates -= referenced
    if candidates == old:
        return sorted(old)
    txn.execute_batch(
        "DELETE FROM event_forward_extremities WHERE room_id = ? AND event_id = ?",
        [(room_id, e) for e in sorted(old - candidates)],
    )
    txn.execute_batch(
        "INSERT INTO event_forward_extremities (room_id, event_id) VALUES (?, ?)",
        [(room_id, e) for e in sorted(candidates - old)],
    )
    return sorted(candidates)


def _update_backward_extremities_txn(txn: Cursor, room_id: str, accepted: list[Event]) -> None:
    """Prev events we lack become backward extremities; events we now have stop being ones."""
    if not accepted:
        return
    new_ids = {e.event_id for e in accepted}
    prevs = {p for e in accepted for p in e.prev_event_ids()} - new_ids
    have: set[str] = set()
    for chunk in batch_iter(sorted(prevs), IN_LIST_BATCH):
        clause, args = in_list_clause(txn.engine, "event_id", chunk)
        txn.execute(f"SELECT event_id FROM events WHERE {clause} AND NOT outlier", args)
        have.update(r[0] for r in txn)
    txn.execute_batch(
        "INSERT INTO event_backward_extremities (room_id, event_id) VALUES (?, ?)"
        " ON CONFLICT (room_id, event_id) DO NOTHING",
        [(room_id, p) for p in sorted(prevs - have)],
    )
    txn.execute_batch(
        "DELETE FROM event_backward_extremities WHERE room_id = ? AND event_id = ?",
        [(room_id, e) for e in sorted(new_ids)],
    )


def _upsert_local_membership_txn(txn: Cursor, rows: list[tuple[Any, ...]]) -> None:
    """Rows of ``(room_id, user_id, event_id, membership, stream_ordering)``."""
    txn.execute_batch(
        "INSERT INTO local_current_membership (room_id, user_id, event_id, membership, stream_ordering)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, room_id) DO UPDATE SET"
        " event_id = EXCLUDED.event_id, membership = EXCLUDED.membership,"
        " stream_ordering = EXCLUDED.stream_ordering",
        rows,
    )


def _is_membership(ev: Event) -> bool:
    return (
        ev.type == "m.room.member"
        and isinstance(ev.state_key, str)
        and ev.membership is not None
        and not ev.rejected
    )


def _metadata_json(ev: Event) -> str:
    md = {k: v for k, v in ev.internal_metadata.to_dict().items() if k not in _METADATA_COLUMNS}
    return json.dumps(md, separators=(",", ":"))


def _str_or_none(value: object) -> Optional[str]:
    return value if isinstance(value, str) else None

