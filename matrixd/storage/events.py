"""Reading events: by id (cached), by room and stream or DAG order, the DAG's edges, auth chains.

Writes go through :class:`matrixd.storage.events_writer.EventWriter` (one
process); every process reads with this store.

Events are immutable, so the cache only changes when a redaction applies to
an event: the cache holds what readers should see (the pruned event, with
``unsigned.redacted_by`` naming the redaction), and a stored redaction
invalidates its target here, via :meth:`EventStore.invalidate_events`, called
after the writing commit and by the replication handler of the events stream
in other processes.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Collection, Iterable, Literal, Mapping, NamedTuple, Optional, Sequence

from matrixd.events.event import EVENT_ID_LIST_FIELDS, REPEATED_STRING_FIELDS, Event, InternalMetadata, JsonDict
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion
from matrixd.storage.cache import LruCache, RecentStreamRows
from matrixd.storage.database import Cursor, Database
from matrixd.storage.models import EventStreamRow, TopologicalPosition
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, in_list_clause
from matrixd.types import IdentifierError, get_domain_from_id
from matrixd.util.clock import Clock

#: The redaction algorithm: ``(pdu, room_version) -> pruned pdu`` (a new dict).
PruneEventDict = Callable[[JsonDict, RoomVersion], JsonDict]
Direction = Literal["f", "b"]

_EVENT_COLUMNS = (
    "e.event_id, e.stream_ordering, e.outlier, e.rejected_reason, e.soft_failed,"
    " j.room_version, j.internal_metadata, j.json"
)
#: What a client may see of a room's timeline.
_TIMELINE = "NOT outlier AND rejected_reason IS NULL AND NOT soft_failed"
#: Stream spans up to this wide are read for many rooms with one range query
#: (the span bounds the rows scanned); wider ones use one index probe per room.
_DENSE_SPAN = 2000
_MIN_BIGINT = -(2**63)


class TimelineRow(NamedTuple):
    """A timeline event's position: what sync needs before loading the event."""

    event_id: str
    stream_ordering: int
    topological_ordering: int


class EventStore:
    """Read access to stored events.

    Args:
        db: the database.
        clock: the clock (unused by reads today; kept for uniformity of stores).
        prune_event_dict: the redaction algorithm (``matrixd.events``) used to
            build the view of redacted events.
        cache_bytes: roughly how much memory the LRU event cache may hold
            (sizes are estimated, see :func:`approx_event_size`); about 4,000
            short message events with the default, as many as the 8 MiB held
            before events were cached in compact form.
    """

    def __init__(
        self, db: Database, clock: Clock, *, prune_event_dict: PruneEventDict, cache_bytes: int = 7 * 2**20
    ) -> None:
        self._db = db
        self._clock = clock
        self._prune = prune_event_dict
        self._cache: LruCache[str, Event] = LruCache("events", cache_bytes, size_of=approx_event_size)
        # Only in the process that writes events (see enable_writer_caches): the
        # writer keeps them exact, so nothing else needs to invalidate them.
        self._extremities: Optional[LruCache[str, tuple[str, ...]]] = None
        self._recent_rows: Optional[RecentStreamRows[EventStreamRow]] = None
        # What clients see of the same ids: (room_id, row) of visible timeline events.
        self._recent_timeline: Optional[RecentStreamRows[tuple[str, TimelineRow]]] = None
        # Marks of events the writer cached as written, see invalidate_events.
        self._primed: dict[str, None] = {}
        self._invalidation_listeners: list[Callable[[list[str]], None]] = []

    def enable_writer_caches(self) -> None:
        """Called by the event writer of this process: it keeps forward extremities
        and recent events-stream rows in memory, so readers here need not ask the
        database for what was just written.  Never enabled where another process writes."""
        if self._extremities is None:
            self._extremities = LruCache("forward_extremities", 10_000)
            self._recent_rows = RecentStreamRows(_RECENT_ROWS)
            self._recent_timeline = RecentStreamRows(_RECENT_ROWS)


    def written_by_writer(
        self,
        allocated: Sequence[int],
        rows: Sequence[EventStreamRow],
        moved: Iterable[int],
        extremities: Mapping[str, Sequence[str]],
        new_events: Iterable[Event],
        timeline: Sequence[Event] = (),
    ) -> None:
        """After the writer's commit (before its stream position advances).

        ``allocated``: every events-stream id the batch took; ``rows``: the
        events now at those ids; ``moved``: older ids whose event moved (an
        outlier joined the timeline); ``extremities``: rooms' new forward
        extremities; ``new_events``: events stored for the first time, cached
        unless they are outliers (a remote room's state and auth chain, thousands
        at a time on a join, which are read back only when needed).
        """
        if self._recent_rows is not None:
            # Outliers' ids are left unrecorded (readers of a range holding one go to the database):
            # a remote join stores thousands, and their rows would keep strings of the parsed answer
            # alive, scattered over memory the answer otherwise gives back.
            outlier_ids = {row.stream_ordering for row in rows if row.outlier}
            by_id: dict[int, list[EventStreamRow]] = {}
            for row in rows:
                if row.stream_ordering not in outlier_ids:
                    by_id.setdefault(row.stream_ordering, []).append(row)
            self._recent_rows.record((i for i in allocated if i > 0 and i not in outlier_ids), by_id)
            self._recent_rows.clear_ids(moved)
        if self._recent_timeline is not None:
            visible: dict[int, list[tuple[str, TimelineRow]]] = {}
            for ev in timeline:
                so = ev.internal_metadata.stream_ordering
                if so is not None and so > 0:
                    visible.setdefault(so, []).append((ev.room_id, TimelineRow(ev.event_id, so, int(ev.depth))))
            self._recent_timeline.record((i for i in allocated if i > 0), visible)
            self._recent_timeline.clear_ids(moved)
        if self._extremities is not None and extremities:
            self._extremities.invalidate_many(extremities)
            for room_id, ids in extremities.items():
                self._extremities.set(room_id, tuple(sorted(ids)))
        for ev in new_events:
            if ev.internal_metadata.outlier:
                continue
            # A copy sharing the repeated strings, as events read from the database do
            # (the writer's own object holds the request's strings).
            compact = Event.compact(_share_strings(ev.get_pdu_json()), ev.room_version, ev.event_id,
                                    ev.internal_metadata)
            self._cache.set(ev.event_id, compact)
            self._primed[ev.event_id] = None
        while len(self._primed) > _MAX_PRIMED:
            del self._primed[next(iter(self._primed))]

    def invalidate_written(self, event_ids: Iterable[str]) -> None:
        """The writer's own invalidations (after its commit): always evict."""
        ids = list(event_ids)
        for event_id in ids:
            self._primed.pop(event_id, None)
        self._evict(ids)

    def invalidate_forward_extremities(self, room_id: str) -> None:
        """A room's extremities changed outside the writer (its rows were deleted)."""
        if self._extremities is not None:
            self._extremities.invalidate(room_id)
        if self._recent_rows is not None:
            self._recent_rows.clear()
        if self._recent_timeline is not None:
            self._recent_timeline.clear()

    # -- by id ------------------------------------------------------------------

    async def get_event(self, event_id: str) -> Optional[Event]:
        """The event (pruned if redacted), including outliers and rejected ones; None if unknown."""
        return (await self.get_events([event_id])).get(event_id)

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, Event]:
        """The known events among ``event_ids``, keyed by id (unknown ids are absent)."""
        result: dict[str, Event] = {}
        missing: list[str] = []
        for event_id in dict.fromkeys(event_ids):
            cached = self._cache.get(event_id)
            if cached is not None:
                result[event_id] = cached
            else:
                missing.append(event_id)
        if missing:
            generation = self._cache.generation
            fetched = await self._db.run_interaction("get_events", self._fetch_events_txn, missing)
            for event_id, event in fetched.items():
                self._cache.set_if_unchanged(event_id, event, generation)
            result.update(fetched)
        return result

    async def get_events_as_list(self, event_ids: Sequence[str]) -> list[Event]:
        """The known events among ``event_ids`` in the given order (unknown ids skipped)."""
        events = await self.get_events(event_ids)
        return [events[e] for e in event_ids if e in events]

    async def get_unredacted_pdu_texts(self, event_ids: Collection[str]) -> dict[str, tuple[int, str]]:
        """``(depth, stored PDU JSON text)`` of those of ``event_ids`` that are stored and that no
        redaction targets (whether or not it applies): their stored text is what they are.

        For answers relaying thousands of events (``/state``) without parsing and re-encoding each.
        """

        def _txn(txn: Cursor) -> dict[str, tuple[int, str]]:
            found: dict[str, tuple[int, str]] = {}
            for chunk in batch_iter(list(event_ids), IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "e.event_id", chunk)
                txn.execute(
                    "SELECT e.event_id, e.topological_ordering, j.json FROM events e"
                    " JOIN event_json j ON j.event_id = e.event_id"
                    f" WHERE {clause} AND NOT EXISTS (SELECT 1 FROM redactions r WHERE r.redacts = e.event_id)",
                    args,
                )
                for event_id, depth, text in txn:
                    found[event_id] = (int(depth), text)
            return found

        return await self._db.run_interaction("get_unredacted_pdu_texts", _txn)

    async def have_seen_events(self, event_ids: Collection[str]) -> set[str]:
        """Which of ``event_ids`` are stored (as anything, outlier or rejected included)."""

        def _txn(txn: Cursor) -> set[str]:
            seen: set[str] = set()
            for chunk in batch_iter(event_ids, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "event_id", chunk)
                txn.execute(f"SELECT event_id FROM events WHERE {clause}", args)
                seen.update(r[0] for r in txn)
            return seen

        return await self._db.run_interaction("have_seen_events", _txn)

    async def get_state_keys(
        self, event_ids: Collection[str]
    ) -> dict[str, tuple[str, str, Optional[str], bool]]:
        """``{event_id: (room_id, type, state_key, rejected)}`` of the stored events among ``event_ids``
        (``state_key`` None: not a state event): what building a state map needs, without loading
        (or caching) the events."""

        def _txn(txn: Cursor) -> dict[str, tuple[str, str, Optional[str], bool]]:
            out: dict[str, tuple[str, str, Optional[str], bool]] = {}
            for chunk in batch_iter(event_ids, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "event_id", chunk)
                txn.execute(
                    "SELECT event_id, room_id, type, state_key, rejected_reason IS NOT NULL FROM events"
                    f" WHERE {clause}", args)
                out.update((r[0], (r[1], r[2], r[3], bool(r[4]))) for r in txn)
            return out

        return await self._db.run_interaction("get_state_keys", _txn)

    def invalidate_events(self, event_ids: Iterable[str]) -> None:
        """Forget cached copies (a redaction arrived, an outlier joined the timeline, events were purged)."""
        ids = list(event_ids)
        if self._primed:
            # The replication dispatcher invalidates every new event's id, also in the
            # writer's process: an event the writer just cached as written (fresh, not
            # redacted) is spared that first, generic invalidation.  Real changes to it
            # go through invalidate_written, which always evicts.
            spared = [i for i in ids if i in self._primed]
            for event_id in spared:
                del self._primed[event_id]
            if spared:
                spared_set = set(spared)
                ids = [i for i in ids if i not in spared_set]
        if ids and self._recent_rows is not None and self._recent_timeline is not None:
            # Rare here (a redaction's target, purged events): the remembered rows
            # may name what is gone, so readers go back to the database.
            self._recent_rows.clear()
            self._recent_timeline.clear()
        self._evict(ids)

    def _evict(self, ids: list[str]) -> None:
        self._cache.invalidate_many(ids)
        for listener in self._invalidation_listeners:
            listener(ids)

    def add_invalidation_listener(self, listener: Callable[[list[str]], None]) -> None:
        """Also tell ``listener`` about every :meth:`invalidate_events` (caches keyed by event elsewhere)."""
        self._invalidation_listeners.append(listener)

    def _fetch_events_txn(self, txn: Cursor, event_ids: Sequence[str]) -> dict[str, Event]:
        rows: dict[str, tuple[Any, ...]] = {}
        redactions: dict[str, list[tuple[str, bool, str, str]]] = {}
        for chunk in batch_iter(event_ids, IN_LIST_BATCH):
            clause, args = in_list_clause(txn.engine, "e.event_id", chunk)
            txn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events e JOIN event_json j ON j.event_id = e.event_id"
                f" WHERE {clause}",
                args,
            )
            for row in txn:
                rows[row[0]] = row
            clause, args = in_list_clause(txn.engine, "r.redacts", chunk)
            txn.execute(
                "SELECT r.redacts, r.event_id, r.authorised, re.sender, re.room_id FROM redactions r"
                " JOIN events re ON re.event_id = r.event_id"
                f" WHERE {clause} AND re.rejected_reason IS NULL ORDER BY re.stream_ordering",
                args,
            )
            for redacts, redaction_id, authorised, sender, room_id in txn:
                redactions.setdefault(redacts, []).append((redaction_id, bool(authorised), sender, room_id))
        return {event_id: self._build_event(row, redactions.get(event_id, ())) for event_id, row in rows.items()}

    def _build_event(self, row: tuple[Any, ...], redactions: Iterable[tuple[str, bool, str, str]]) -> Event:
        event_id, stream_ordering, outlier, rejected_reason, soft_failed, room_version_id, metadata_json, pdu_json = row
        room_version = KNOWN_ROOM_VERSIONS.get(room_version_id)
        if room_version is None:
            raise RuntimeError(f"event {event_id} is stored with unknown room version {room_version_id!r}")
        pdu = _share_strings(json.loads(pdu_json))
        metadata = InternalMetadata.from_dict(json.loads(metadata_json))
        metadata.stream_ordering = int(stream_ordering)
        metadata.outlier = bool(outlier)
        metadata.rejected_reason = rejected_reason
        metadata.soft_failed = bool(soft_failed)
        for redaction_id, authorised, redaction_sender, redaction_room in redactions:
            if _redaction_applies(Event(pdu, room_version, event_id, metadata), redaction_sender, redaction_room,
                                  authorised):
                pruned = self._prune(pdu, room_version)
                pruned["unsigned"] = {**(pruned.get("unsigned") or {}), "redacted_by": redaction_id}
                return Event.compact(pruned, room_version, event_id, metadata)
        return Event.compact(pdu, room_version, event_id, metadata)

    # -- timeline ---------------------------------------------------------------

    async def get_room_events_stream(
        self,
        room_id: str,
        from_stream: Optional[int],
        to_stream: Optional[int],
        limit: int,
        direction: Direction = "b",
    ) -> list[Event]:
        """A room's timeline in arrival (stream) order: no outliers, rejected or soft-failed events.

        ``direction="f"``: events with ``from_stream < stream_ordering <= to_stream``, oldest first.
        ``direction="b"``: events with ``to_stream < stream_ordering <= from_stream``, newest first.
        A None bound is unbounded.  Backfilled events have negative orderings,
        so a positive lower bound (a sync token) never returns them.
        """
        lower, upper = (from_stream, to_stream) if direction == "f" else (to_stream, from_stream)
        clauses = ["room_id = ?", _TIMELINE]
        args: list[Any] = [room_id]
        if lower is not None:
            clauses.append("stream_ordering > ?")
            args.append(lower)
        if upper is not None:
            clauses.append("stream_ordering <= ?")
            args.append(upper)
        order = "ASC" if direction == "f" else "DESC"
        sql_text = (
            f"SELECT event_id FROM events WHERE {' AND '.join(clauses)}"
            f" ORDER BY stream_ordering {order} LIMIT ?"
        )
        return await self._events_for_query("get_room_events_stream", sql_text, [*args, limit])

    async def get_room_event_ids_after(self, room_id: str, stream_ordering: int, limit: int) -> list[str]:
        """Ids of the room's timeline events (rejected and soft-failed included) after ``stream_ordering``, oldest
        first: those whose state must be recomputed when earlier state changes (a partial-state resync)."""

        def _txn(txn: Cursor) -> list[str]:
            txn.execute(
                "SELECT event_id FROM events WHERE room_id = ? AND NOT outlier AND stream_ordering > ?"
                " ORDER BY stream_ordering ASC LIMIT ?",
                (room_id, stream_ordering, limit),
            )
            return [r[0] for r in txn]

        return await self._db.run_interaction("get_room_event_ids_after", _txn)

    async def mark_rejected(self, event_id: str, reason: str) -> None:
        """An accepted event found not allowed by the state before it once that state was fully known."""
        await self._db.run_interaction(
            "mark_rejected", lambda txn: txn.execute(
                "UPDATE events SET rejected_reason = ? WHERE event_id = ?", (reason, event_id))
        )
        self.invalidate_written([event_id])

    async def get_room_events_topological(
        self,
        room_id: str,
        from_pos: Optional[TopologicalPosition],
        to_pos: Optional[TopologicalPosition],
        limit: int,
        direction: Direction = "b",
    ) -> list[Event]:
        """A room's timeline in DAG order ``(depth, stream_ordering)``, for /messages.

        A position ``(t, s)`` means "just after the event with that key", so:
        ``direction="b"`` returns events with ``to_pos < key <= from_pos``, latest first;
        ``direction="f"`` returns events with ``from_pos < key <= to_pos``, earliest first.
        A None bound is unbounded.
        """
        lower, upper = (from_pos, to_pos) if direction == "f" else (to_pos, from_pos)
        clauses = ["room_id = ?", _TIMELINE]
        args: list[Any] = [room_id]
        if lower is not None:
            clauses.append("(topological_ordering > ? OR (topological_ordering = ? AND stream_ordering > ?))")
            args.extend([lower[0], lower[0], lower[1]])
        if upper is not None:
            clauses.append("(topological_ordering < ? OR (topological_ordering = ? AND stream_ordering <= ?))")
            args.extend([upper[0], upper[0], upper[1]])
        order = "ASC" if direction == "f" else "DESC"
        sql_text = (
            f"SELECT event_id FROM events WHERE {' AND '.join(clauses)}"
            f" ORDER BY topological_ordering {order}, stream_ordering {order} LIMIT ?"
        )
        return await self._events_for_query("get_room_events_topological", sql_text, [*args, limit])

    async def get_recent_timeline_rows(
        self, bounds: Mapping[str, tuple[Optional[int], int]], limit: int
    ) -> dict[str, list[TimelineRow]]:
        """For many rooms at once, the latest timeline events in a stream range, newest first.

        ``bounds[room_id] = (lower, upper)`` asks for events with
        ``lower < stream_ordering <= upper`` (``lower`` None: unbounded, so
        backfilled history is included); at most ``limit`` per room.  Rooms
        with no such events are absent from the result.  One transaction:
        a single range query when every room shares a narrow range (an
        incremental sync), else one index probe per room (a ``LATERAL`` join
        on PostgreSQL, a loop of statements on SQLite).
        """
        if not bounds or limit < 1:
            return {}
        items = sorted(bounds.items())
        lowers = {lo for _, (lo, _) in items}
        max_upper = max(up for _, (_, up) in items)
        if len(lowers) == 1 and None not in lowers:
            (lower,) = lowers
            assert lower is not None
            if self._recent_timeline is not None and lower >= 0:
                recent = self._recent_timeline.get(lower, max_upper)
                if recent is not None:
                    return _recent_rows_from_memory(recent, dict(_bounds_upper(items)), limit)
            if max_upper - lower <= _DENSE_SPAN:
                return await self._db.run_interaction(
                    "get_recent_timeline_rows_dense", _recent_rows_dense_txn, items, lower, max_upper, limit
                )
        return await self._db.run_interaction("get_recent_timeline_rows", _recent_rows_per_room_txn, items, limit)

    async def _events_for_query(self, desc: str, sql_text: str, args: Sequence[Any]) -> list[Event]:
        rows = await self._db.execute(desc, sql_text, *args)
        return await self.get_events_as_list([r[0] for r in rows])

    async def get_topological_position(self, event_id: str) -> Optional[TopologicalPosition]:
        """``(depth, stream_ordering)`` of a stored event, the pagination key after it."""
        rows = await self._db.execute(
            "get_topological_position",
            "SELECT topological_ordering, stream_ordering FROM events WHERE event_id = ?",
            event_id,
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    async def get_topological_position_at_stream(
        self, room_id: str, stream_ordering: int
    ) -> Optional[TopologicalPosition]:
        """The largest DAG key among the room's timeline events at or before a stream position.

        Turns a sync (stream) token into a /messages starting point.
        """
        rows = await self._db.execute(
            "get_topological_position_at_stream",
            "SELECT topological_ordering, stream_ordering FROM events"
            f" WHERE room_id = ? AND stream_ordering <= ? AND {_TIMELINE}"
            " ORDER BY topological_ordering DESC, stream_ordering DESC LIMIT 1",
            room_id,
            stream_ordering,
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    async def get_max_stream_ordering(self) -> int:
        """The largest stream ordering stored (0 if none): a startup fact, not an announceable position."""
        rows = await self._db.execute("get_max_stream_ordering", "SELECT MAX(stream_ordering) FROM events")
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    async def get_event_stream_rows(self, from_token: int, to_token: int, limit: int) -> list[EventStreamRow]:
        """Events with ``from_token < stream_ordering <= to_token``, oldest first (replication catch-up)."""
        if self._recent_rows is not None:
            recent = self._recent_rows.get(max(from_token, 0), to_token)
            if recent is not None:
                return [row for _, rows in recent for row in rows][:limit]
        rows = await self._db.execute(
            "get_event_stream_rows",
            "SELECT stream_ordering, event_id, room_id, type, state_key, sender, outlier FROM events"
            " WHERE stream_ordering > ? AND stream_ordering <= ? AND stream_ordering > 0"
            " ORDER BY stream_ordering ASC LIMIT ?",
            from_token,
            to_token,
            limit,
        )
        return [EventStreamRow(int(r[0]), r[1], r[2], r[3], r[4], r[5], bool(r[6])) for r in rows]

    async def get_backfill_stream_rows(self, from_token: int, to_token: int, limit: int) -> list[EventStreamRow]:
        """Backfilled events with ``to_token <= stream_ordering < from_token`` (both <= 0), newest-allocated first.

        The backfill stream counts down, so "after position p" means "below p".
        """
        rows = await self._db.execute(
            "get_backfill_stream_rows",
            "SELECT stream_ordering, event_id, room_id, type, state_key, sender, outlier FROM events"
            " WHERE stream_ordering < ? AND stream_ordering >= ? ORDER BY stream_ordering DESC LIMIT ?",
            from_token,
            to_token,
            limit,
        )
        return [EventStreamRow(int(r[0]), r[1], r[2], r[3], r[4], r[5], bool(r[6])) for r in rows]

    # -- the DAG ----------------------------------------------------------------

    async def get_latest_event_ids_in_room(self, room_id: str) -> list[str]:
        """The room's forward extremities (sorted): the prev_events of the next event we create."""
        cache = self._extremities
        generation = 0
        if cache is not None:
            hit = cache.get(room_id)
            if hit is not None:
                return list(hit)
            generation = cache.generation
        rows = await self._db.execute(
            "get_latest_event_ids_in_room",
            "SELECT event_id FROM event_forward_extremities WHERE room_id = ? ORDER BY event_id",
            room_id,
        )
        ids = [r[0] for r in rows]
        if cache is not None and ids:
            cache.set_if_unchanged(room_id, tuple(ids), generation)
        return ids

    async def get_backward_extremities(self, room_id: str) -> list[str]:
        """Events referenced as prev_events in the room that we do not have (backfill from here)."""
        rows = await self._db.execute(
            "get_backward_extremities",
            "SELECT event_id FROM event_backward_extremities WHERE room_id = ? ORDER BY event_id",
            room_id,
        )
        return [r[0] for r in rows]

    async def get_auth_chain_ids(self, event_ids: Collection[str], include_given: bool = False) -> set[str]:
        """The full auth chain of ``event_ids``: their auth events, recursively.

        The given events themselves are included only if ``include_given`` (or
        if one is in another's chain).
        """
        chain = await self._db.run_interaction("get_auth_chain_ids", _auth_chain_txn, list(event_ids))
        if include_given:
            chain.update(event_ids)
        return chain

    async def get_auth_chain_difference(self, state_sets: Sequence[Collection[str]]) -> set[str]:
        """State resolution v2's auth difference: events in some but not all sets' full auth chains."""

        def _txn(txn: Cursor) -> set[str]:
            chains = [_auth_chain_txn(txn, list(s)) for s in state_sets]
            if not chains:
                return set()
            union: set[str] = set().union(*chains)
            common = set(chains[0]).intersection(*chains[1:])
            return union - common

        return await self._db.run_interaction("get_auth_chain_difference", _txn)


_intern = sys.intern


def _share_strings(pdu: JsonDict) -> JsonDict:
    """Intern what every event repeats (its keys, room, sender, type, cited event ids),
    so cached events share one copy of each: about a third of a message event's memory."""
    out: JsonDict = {}
    for key, value in pdu.items():
        key = _intern(key)
        if isinstance(value, str) and key in REPEATED_STRING_FIELDS:
            value = _intern(value)
        elif key in EVENT_ID_LIST_FIELDS and isinstance(value, list):
            value = [_intern(v) if isinstance(v, str) else v for v in value]
        elif isinstance(value, dict) and key == "content":
            value = {_intern(k): v for k, v in value.items()}
        out[key] = value
    return out


def approx_event_size(event: Event) -> int:
    """A rough estimate of an event's memory in bytes, cheap enough for every cache insert.

    A stored message event (about 0.7 KB of JSON) takes about 1.8 KB as Python
    objects in its cached form: repeated strings shared, hashes and signatures
    kept as one string (:meth:`Event.compact`); 3.6 KB without either.
    """
    pdu = event.get_fields_without_signing()
    size = 500 + 80 * len(pdu) + event.signing_size()
    for key in EVENT_ID_LIST_FIELDS:
        ids = pdu.get(key)
        if isinstance(ids, list):
            size += 30 * len(ids)
    content = pdu.get("content")
    if isinstance(content, dict):
        size += 100 * len(content)
        for value in content.values():
            size += len(value) if isinstance(value, str) else 200
    return size


#: How many of the latest events-stream ids the writer's process remembers rows for.
_RECENT_ROWS = 1000
#: Events cached by the writer whose replication invalidation is still to come.
_MAX_PRIMED = 10_000


def _bounds_upper(items: Sequence[tuple[str, tuple[Optional[int], int]]]) -> Iterable[tuple[str, int]]:
    return ((room_id, up) for room_id, (_, up) in items)


def _recent_rows_from_memory(
    recent: Sequence[tuple[int, tuple[tuple[str, TimelineRow], ...]]], uppers: Mapping[str, int], limit: int
) -> dict[str, list[TimelineRow]]:
    """:func:`_recent_rows_dense_txn` over the writer's remembered rows (every id in the range known)."""
    out: dict[str, list[TimelineRow]] = {}
    for _, entries in reversed(recent):
        for room_id, row in entries:
            upper = uppers.get(room_id)
            if upper is None or row.stream_ordering > upper:
                continue
            rows = out.setdefault(room_id, [])
            if len(rows) < limit:
                rows.append(row)
    return out


def _recent_rows_dense_txn(
    txn: Cursor, items: list[tuple[str, tuple[Optional[int], int]]], lower: int, max_upper: int, limit: int
) -> dict[str, list[TimelineRow]]:
    uppers = {room_id: up for room_id, (_, up) in items}
    out: dict[str, list[TimelineRow]] = {}
    for chunk in batch_iter(list(uppers), IN_LIST_BATCH):
        clause, args = in_list_clause(txn.engine, "room_id", chunk)
        txn.execute(
            "SELECT room_id, event_id, stream_ordering, topological_ordering FROM events"
            f" WHERE {clause} AND stream_ordering > ? AND stream_ordering <= ? AND {_TIMELINE}"
            " ORDER BY stream_ordering DESC",
            [*args, lower, max_upper],
        )
        for room_id, event_id, stream, topo in txn:
            if int(stream) > uppers[room_id]:
                continue
            rows = out.setdefault(room_id, [])
            if len(rows) < limit:
                rows.append(TimelineRow(event_id, int(stream), int(topo)))
    return out


def _recent_rows_per_room_txn(
    txn: Cursor, items: list[tuple[str, tuple[Optional[int], int]]], limit: int
) -> dict[str, list[TimelineRow]]:
    out: dict[str, list[TimelineRow]] = {}
    if txn.engine.name == "postgres":
        for chunk in batch_iter(items, IN_LIST_BATCH):
            txn.execute(
                "SELECT b.room_id, e.event_id, e.stream_ordering, e.topological_ordering"
                " FROM unnest(?::text[], ?::bigint[], ?::bigint[]) AS b(room_id, lower_bound, upper_bound)"
                " CROSS JOIN LATERAL ("
                "  SELECT event_id, stream_ordering, topological_ordering FROM events"
                "  WHERE room_id = b.room_id AND stream_ordering > b.lower_bound"
                f"  AND stream_ordering <= b.upper_bound AND {_TIMELINE}"
                "  ORDER BY stream_ordering DESC LIMIT ?"
                ") e ORDER BY b.room_id, e.stream_ordering DESC",
                [
                    [r for r, _ in chunk],
                    [_MIN_BIGINT if lo is None else lo for _, (lo, _) in chunk],
                    [up for _, (_, up) in chunk],
                    limit,
                ],
            )
            for room_id, event_id, stream, topo in txn:
                out.setdefault(room_id, []).append(TimelineRow(event_id, int(stream), int(topo)))
        return out
    for room_id, (lower, upper) in items:
        txn.execute(
            "SELECT event_id, stream_ordering, topological_ordering FROM events"
            f" WHERE room_id = ? AND stream_ordering > ? AND stream_ordering <= ? AND {_TIMELINE}"
            " ORDER BY stream_ordering DESC LIMIT ?",
            (room_id, _MIN_BIGINT if lower is None else lower, upper, limit),
        )
        rows = [TimelineRow(r[0], int(r[1]), int(r[2])) for r in txn]
        if rows:
            out[room_id] = rows
    return out


def _auth_chain_txn(txn: Cursor, event_ids: list[str]) -> set[str]:
    """All events reachable over event_auth from ``event_ids`` (not including them)."""
    chain: set[str] = set()
    if not event_ids:
        return chain
    # One recursive query per batch; UNION (not UNION ALL) deduplicates, which
    # also stops the walk on events already visited.
    for chunk in batch_iter(event_ids, IN_LIST_BATCH):
        clause, args = in_list_clause(txn.engine, "event_id", chunk)
        txn.execute(
            "WITH RECURSIVE chain(event_id) AS ("
            f" SELECT auth_id FROM event_auth WHERE {clause}"
            " UNION"
            " SELECT a.auth_id FROM event_auth a JOIN chain c ON a.event_id = c.event_id"
            ") SELECT event_id FROM chain",
            args,
        )
        chain.update(r[0] for r in txn)
    return chain


def _redaction_applies(event: Event, redaction_sender: str, redaction_room: str, authorised: bool) -> bool:
    """Whether a stored, non-rejected redaction takes effect on ``event`` (room v3 "Handling redactions")."""
    if redaction_room != event.room_id:
        return False
    if event.room_version.event_format == EventFormat.V1:
        # Rooms v1/v2 check redactions in the authorization rules: it passed them.
        return True
    if authorised:
        return True
    try:
        return get_domain_from_id(redaction_sender) == get_domain_from_id(event.sender)
    except IdentifierError:
        return False
