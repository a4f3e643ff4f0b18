"""Walk random rooms through matrixd and Synapse side by side and report where they differ.

For every event of a generated room (in the order it was generated, which is
topological): each side resolves the states after the event's prev events into
the state before it (its own resolver, its own earlier outcomes), the two maps
are compared, then each side decides whether the event is accepted, and the two
decisions are compared.  Each side carries on with its own results; the first
difference ends the room and is reported with everything needed to replay it
(room version and seed).  A few extra resolutions of arbitrary points of the
DAG, and of the final forward extremities, are compared at the end.

Also compared along the way: the event id each side derives from the same PDU
(reference hashes from v3), the redacted form of every event, and the auth
event types each side selects.
"""

from __future__ import annotations

import json
import time
import traceback
from typing import Awaitable, Callable, Iterable, Mapping, Optional, Sequence, TypeVar

import attrs

from matrixd.events.event import Event, StateKey
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
from matrixd.testing.dag import RandomRoomWalk

from tests.differential.known_deviations import STEP1_X, auth_deviation, resolution_deviation
from tests.differential.matrixd_side import MatrixdRoomCore
from tests.differential.synapse_side import SynapseRoomCore

StateMapIds = Mapping[StateKey, str]
T = TypeVar("T")

# The room versions compared by default: each auth-rule or state-res generation.
DEFAULT_VERSIONS: tuple[str, ...] = ("1", "2", "6", "10", "11", "12")


@attrs.frozen
class Mismatch:
    """The first point where the two implementations disagree in one room."""

    room_version: str
    seed: int
    kind: str  # event_id | redaction | auth_types | state_before | auth | extra_resolution | crash
    event_id: str
    note: str
    matrixd: str
    synapse: str
    event_json: str

    def describe(self) -> str:
        return (
            f"MISMATCH [{self.kind}] room version {self.room_version} seed {self.seed}\n"
            f"  event   {self.event_id} ({self.note})\n"
            f"  pdu     {self.event_json}\n"
            f"  matrixd {self.matrixd}\n"
            f"  synapse {self.synapse}"
        )


@attrs.frozen
class RoomRun:
    room_version: str
    seed: int
    events: int
    accepted: int
    rejected: int
    resolutions: int
    conflicted_resolutions: int
    matrixd_seconds: float
    synapse_seconds: float
    mismatch: Optional[Mismatch]
    excluded: Optional[str] = None  # why the room stopped early without a mismatch


class _Excluded(Exception):
    """The room hit a documented Synapse deviation from the spec; it ends uncounted."""


class _Crash(Exception):
    def __init__(self, side: str, detail: str) -> None:
        super().__init__(f"{side} crashed")
        self.side = side
        self.detail = detail


def _describe_state_diff(a: StateMapIds, b: StateMapIds, events: Mapping[str, Event]) -> tuple[str, str]:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))

    def show(m: StateMapIds) -> str:
        parts = []
        for k in keys:
            eid = m.get(k)
            ev = events.get(eid) if eid else None
            what = f"{eid} {json.dumps(ev.content, sort_keys=True)[:80]}" if ev is not None else str(eid)
            parts.append(f"{k} -> {what}")
        return "; ".join(parts)

    return show(a), show(b)


def _pdu_json(event: Event) -> str:
    return json.dumps(event.get_pdu_json(), sort_keys=True, separators=(",", ":"))


class _RoomComparison:
    """State for one room walked through both implementations."""

    def __init__(self, room_version: str, seed: int, n_events: int,
                 trace: Optional[Callable[[str], None]] = None, strict: bool = False) -> None:
        self.version = room_version
        self.trace = trace
        self.strict = strict
        self.seed = seed
        rv = KNOWN_ROOM_VERSIONS[room_version]
        self.walk = RandomRoomWalk(rv, seed, n_events)
        self.mx: Optional[MatrixdRoomCore] = None
        self.syn: Optional[SynapseRoomCore] = None
        self.mx_after: dict[str, dict[StateKey, str]] = {}
        self.syn_after: dict[str, dict[StateKey, str]] = {}
        self.accepted = self.rejected = self.resolutions = self.conflicted = 0
        self.mx_time = self.syn_time = 0.0
        self._outliers_seen = 0

    def mismatch(self, kind: str, event: Optional[Event], matrixd: str, synapse: str) -> Mismatch:
        eid = event.event_id if event is not None else "-"
        return Mismatch(
            self.version, self.seed, kind, eid,
            self.walk.notes.get(eid, "") if event is not None else "",
            matrixd, synapse, _pdu_json(event) if event is not None else "",
        )

    async def _timed(self, side: str, fn: Callable[[], Awaitable[T]]) -> T:
        start = time.perf_counter()
        try:
            return await fn()
        except Exception:
            raise _Crash(side, traceback.format_exc(limit=6))
        finally:
            spent = time.perf_counter() - start
            if side == "matrixd":
                self.mx_time += spent
            else:
                self.syn_time += spent

    def _sync_outliers(self) -> None:
        assert self.mx is not None and self.syn is not None
        for o in self.walk.outliers[self._outliers_seen:]:
            self.mx.add_outlier(o)
            self.syn.add_outlier(o)
        self._outliers_seen = len(self.walk.outliers)

    async def _states_before(self, prevs: Sequence[str], event: Optional[Event]) -> tuple[
        Optional[dict[StateKey, str]], Optional[dict[StateKey, str]], Optional[Mismatch]
    ]:
        assert self.mx is not None and self.syn is not None
        if not prevs:
            return {}, {}, None
        if len(prevs) == 1:
            return dict(self.mx_after[prevs[0]]), dict(self.syn_after[prevs[0]]), None
        mx_sets = [self.mx_after[p] for p in prevs]
        syn_sets = [self.syn_after[p] for p in prevs]
        self.resolutions += 1
        if any(s != mx_sets[0] for s in mx_sets[1:]):
            self.conflicted += 1
        mx, syn = self.mx, self.syn
        mx_state = await self._timed("matrixd", lambda: mx.resolve(mx_sets))
        syn_state = await self._timed("synapse", lambda: syn.resolve(syn_sets))
        if mx_state != syn_state:
            if not self.strict and resolution_deviation(mx, mx_sets, syn_state) is not None:
                raise _Excluded(STEP1_X)
            a, b = _describe_state_diff(mx_state, syn_state, self.walk.events)
            return None, None, self.mismatch("state_before", event, a, b + f" | prev_events {list(prevs)}")
        return mx_state, syn_state, None

    async def _one_event(self, event: Event, mx_before: StateMapIds, syn_before: StateMapIds) -> Optional[Mismatch]:
        assert self.mx is not None and self.syn is not None
        mx, syn = self.mx, self.syn
        syn_id = self.syn.event_id_of(event)
        if syn_id != event.event_id:
            return self.mismatch("event_id", event, event.event_id, syn_id)
        mx_pruned = await self._timed("matrixd", _as_async(lambda: mx.pruned(event)))
        syn_pruned = await self._timed("synapse", _as_async(lambda: syn.pruned(event)))
        if mx_pruned != syn_pruned:
            return self.mismatch("redaction", event, json.dumps(mx_pruned, sort_keys=True),
                                 json.dumps(syn_pruned, sort_keys=True))
        mx_types = await self._timed("matrixd", _as_async(lambda: mx.auth_types(event)))
        syn_types = await self._timed("synapse", _as_async(lambda: syn.auth_types(event)))
        if syn_types is not None:
            if self.walk.rv.room_id_is_create_event_hash:
                # Synapse names the create event so its callers load it; the selection
                # itself excludes it from v12 (server-server "Auth events selection").
                syn_types.discard(("m.room.create", ""))
                mx_types.discard(("m.room.create", ""))
            if mx_types != syn_types:
                return self.mismatch("auth_types", event, str(sorted(mx_types)), str(sorted(syn_types)))
        mx_verdict = await self._timed("matrixd", lambda: mx.check(event, mx_before))
        syn_verdict = await self._timed("synapse", lambda: syn.check(event, syn_before))
        if (mx_verdict is None) != (syn_verdict is None):
            quirk = auth_deviation(event, mx_before, self.walk.events, mx_verdict, syn_verdict)
            if quirk is not None and not self.strict:
                raise _Excluded(quirk)
            return self.mismatch(
                "auth", event,
                "accepted" if mx_verdict is None else f"rejected: {mx_verdict}",
                "accepted" if syn_verdict is None else f"rejected: {syn_verdict}",
            )
        rejected = mx_verdict is not None
        if self.trace is not None:
            self.trace(f"{event.event_id} d{event.depth} {event.type} by {event.sender} "
                       f"prev={event.prev_event_ids()} : {self.walk.notes.get(event.event_id, '')} -> "
                       + ("accepted" if mx_verdict is None else f"rejected ({mx_verdict} | {syn_verdict})"))
        mx_after, syn_after = dict(mx_before), dict(syn_before)
        if event.is_state():
            if mx_verdict is None:
                mx_after[event.state_key_tuple()] = event.event_id
            if syn_verdict is None:
                syn_after[event.state_key_tuple()] = event.event_id
        self.mx_after[event.event_id] = mx_after
        self.syn_after[event.event_id] = syn_after
        self.walk.record(event.event_id, mx_after, rejected)
        if rejected:
            self.rejected += 1
        else:
            self.accepted += 1
        return None

    async def _extra_resolutions(self) -> Optional[Mismatch]:
        """Resolve the final extremities and a few arbitrary sets of DAG points."""
        rng = self.walk.rng
        ids = [e.event_id for e in self.walk.order]
        choices = [list(self.walk.extremities)]
        for _ in range(3):
            choices.append(rng.sample(ids, min(len(ids), rng.choice([2, 2, 3]))))
        for points in choices:
            if len(points) < 2:
                continue
            _, _, m = await self._states_before(sorted(points), None)
            if m is not None:
                return attrs.evolve(m, kind="extra_resolution", note=f"resolving the states after {sorted(points)}")
        return None

    async def run(self) -> RoomRun:
        excluded: Optional[str] = None
        try:
            mismatch = await self._run()
        except _Excluded as e:
            mismatch, excluded = None, str(e)
        return RoomRun(
            self.version, self.seed, self.accepted + self.rejected, self.accepted, self.rejected,
            self.resolutions, self.conflicted, self.mx_time, self.syn_time, mismatch, excluded,
        )

    async def _run(self) -> Optional[Mismatch]:
        walk = self.walk
        current: Optional[Event] = None
        try:
            genesis = walk.genesis()
            self.mx = MatrixdRoomCore(walk.rv, walk.factory.room_id)
            self.syn = SynapseRoomCore(self.version, walk.factory.room_id)
            for event in genesis:
                current = event
                prevs = event.prev_event_ids()
                mx_b, syn_b, m = await self._states_before(prevs, event)
                if m is None:
                    assert mx_b is not None and syn_b is not None
                    m = await self._one_event(event, mx_b, syn_b)
                if m is not None:
                    return m
            while not walk.done:
                current = None
                prevs = walk.pick_prev_events()
                mx_b, syn_b, m = await self._states_before(prevs, None)
                if m is not None:
                    return attrs.evolve(m, note=f"state before a new event on {prevs}")
                assert mx_b is not None and syn_b is not None
                event = walk.build_event(prevs, mx_b)
                current = event
                self._sync_outliers()
                m = await self._one_event(event, mx_b, syn_b)
                if m is not None:
                    return m
            current = None
            return await self._extra_resolutions()
        except _Crash as crash:
            text = crash.detail.strip().replace("\n", "\n          ")
            return self.mismatch(
                "crash", current,
                text if crash.side == "matrixd" else "(no crash)",
                text if crash.side == "synapse" else "(no crash)",
            )


def _as_async(fn: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    async def call() -> T:
        return fn()

    return call


async def compare_room(
    room_version: str, seed: int, n_events: int = 40, trace: Optional[Callable[[str], None]] = None,
    strict: bool = False,
) -> RoomRun:
    """Generate one room from ``(room_version, seed)`` and compare the two implementations on it.

    ``trace`` (if given) is told every event and its outcome, for replaying a failure.
    A disagreement that is a documented Synapse deviation (``known_deviations``)
    ends the room as "excluded", unless ``strict``.
    """
    return await _RoomComparison(room_version, seed, n_events, trace, strict).run()


async def compare_many(
    versions: Sequence[str], seeds: Iterable[int], n_events: int = 40,
    on_result: Optional[Callable[[RoomRun], None]] = None, strict: bool = False,
) -> list[RoomRun]:
    """Every seed in every version; ``on_result`` sees each room as it finishes."""
    runs = []
    for seed in seeds:
        for version in versions:
            run = await compare_room(version, seed, n_events, strict=strict)
            runs.append(run)
            if on_result is not None:
                on_result(run)
    return runs


def summarise(runs: Sequence[RoomRun]) -> str:
    """A per-version table: rooms, events, outcomes, resolutions, time per side, mismatches."""
    lines = [f"{'version':>7} {'rooms':>6} {'events':>7} {'accepted':>8} {'rejected':>8} "
             f"{'resolved':>8} {'conflict':>8} {'matrixd s':>9} {'synapse s':>9} {'mismatch':>8} {'excluded':>8}"]
    by_version: dict[str, list[RoomRun]] = {}
    for r in runs:
        by_version.setdefault(r.room_version, []).append(r)
    for version in sorted(by_version, key=lambda v: (len(v), v)):
        rs = by_version[version]
        lines.append(
            f"{version:>7} {len(rs):>6} {sum(r.events for r in rs):>7} {sum(r.accepted for r in rs):>8} "
            f"{sum(r.rejected for r in rs):>8} {sum(r.resolutions for r in rs):>8} "
            f"{sum(r.conflicted_resolutions for r in rs):>8} {sum(r.matrixd_seconds for r in rs):>9.2f} "
            f"{sum(r.synapse_seconds for r in rs):>9.2f} {sum(1 for r in rs if r.mismatch):>8} "
            f"{sum(1 for r in rs if r.excluded):>8}"
        )
    return "\n".join(lines)

