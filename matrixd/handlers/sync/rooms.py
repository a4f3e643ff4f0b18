"""The per-room part of a sync, for many rooms at once: timeline, state, summary.

Every room of a sync is described by a :class:`RoomPlan` (its stream range and
whether it needs its full state); :class:`RoomSyncer` then works on all of
them together so each step is a handful of queries whatever the number of
rooms: the timelines in one batch, the state groups at the timelines' starts
in one, the events (mostly cached) in one, the summaries in one.

State follows the spec's definition: the state at the **start** of the
timeline (all of it for an initial sync, a newly joined room or
``full_state``; for an incremental sync, what changed between the client's
position and the timeline's start, which is empty unless the timeline is
limited or the filter hid state events).  With ``lazy_load_members`` only
the member events of the timeline's senders (and the syncing user, and the
heroes) are sent, skipping ones the device already has.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

import attrs

from matrixd.events.event import Event, StateKey, StateMap
from matrixd.handlers.sync.lazy_members import LazyMembersCache
from matrixd.handlers.sync.timeline import RoomTimeline, TimelineLoader, TimelineRequest
from matrixd.handlers.sync.types import SyncConfig, TimelineBatch, allows_every_event
from matrixd.handlers.filtering import DEFAULT_TIMELINE_LIMIT
from matrixd.storage.cache import LruCache
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.state import StateGroupStore
from matrixd.storage.txn_ids import TxnIdStore
from matrixd.types import JsonDict

MEMBER = "m.room.member"
_NAME_TYPES = ("m.room.name", "m.room.canonical_alias")


@attrs.frozen(slots=True)
class RoomPlan:
    """What one room of a sync covers.

    Attributes:
        room_id: the room.
        joined: a joined room (gets a summary) rather than a left one.
        lower, upper: the timeline's stream range ``(lower, upper]`` (``lower``
            None: from the beginning).
        full_state: send the whole state at the timeline's start, not a delta.
        since: the client's events position the state delta is taken from
            (None for an initial sync).
        check_visibility_upto: events at or before this stream position go
            through history visibility (None: the user saw all of the range).
        fixed_timeline: a timeline decided in advance (the leave event of an
            invite the user rejected); no state is sent with it.
        partial_state: a room joined with partial state, shown to a lazy-loading
            client: its member counts are not known yet, so the summary has none.
        members_resynced: the room's full state arrived since ``since``: the
            summary is sent (with the real counts) even if nothing else changed.
    """

    room_id: str
    joined: bool
    lower: Optional[int]
    upper: int
    full_state: bool
    since: Optional[int]
    check_visibility_upto: Optional[int]
    fixed_timeline: Optional[tuple[Event, ...]] = None
    partial_state: bool = False
    members_resynced: bool = False


@attrs.define
class RoomSyncData:
    timeline: TimelineBatch
    state: list[Event]
    summary: Optional[JsonDict]


def _hidden_state_changes(tl: RoomTimeline) -> dict[StateKey, str]:
    """State changes inside the timeline that the filter hid, where no visible event supersedes them.

    The client applies the timeline on top of the state section, so a key
    whose last change in the timeline is hidden gets that change in the state
    section instead (or the client would never learn it).
    """
    if not tl.hidden_state or not tl.events:
        return {}
    start = tl.events[0].internal_metadata.stream_ordering or 0
    changes = [e for e in tl.hidden_state if (e.internal_metadata.stream_ordering or 0) > start]
    changes += [e for e in tl.events if e.is_state()]
    changes.sort(key=lambda e: e.internal_metadata.stream_ordering or 0)
    last: dict[StateKey, Event] = {}
    for e in changes:
        last[e.state_key_tuple()] = e
    visible = {e.event_id for e in tl.events}
    return {k: e.event_id for k, e in last.items() if e.event_id not in visible}


class RoomSyncer:
    def __init__(
        self,
        *,
        events: EventStore,
        state_groups: StateGroupStore,
        current_state: CurrentStateStore,
        txn_ids: TxnIdStore,
        timelines: TimelineLoader,
        lazy_members: LazyMembersCache,
        replaced_cache_size: int = 50_000,
    ) -> None:
        self._events = events
        self._txn_ids = txn_ids
        self._state_groups = state_groups
        self._current_state = current_state
        self._timelines = timelines
        self._lazy = lazy_members
        # Which state event each event replaced: a fact fixed when the event
        # was persisted ("" for none), so it never needs invalidating.
        self._replaced: LruCache[str, str] = LruCache("sync_replaced_state", replaced_cache_size)

    async def sync_rooms(
        self, config: SyncConfig, plans: Iterable[RoomPlan], now_pos: int, since_pos: Optional[int]
    ) -> dict[str, RoomSyncData]:
        plans_by_room = {p.room_id: p for p in plans}
        if not plans_by_room:
            return {}
        room_filter = config.filter.room
        limit = room_filter.timeline.limit_or(DEFAULT_TIMELINE_LIMIT)
        requests = {
            p.room_id: TimelineRequest(p.lower, p.upper, p.check_visibility_upto)
            for p in plans_by_room.values()
            if p.fixed_timeline is None
        }
        timelines = await self._timelines.load(config.user_id, requests, limit, room_filter.timeline)
        for p in plans_by_room.values():
            if p.fixed_timeline is not None:
                timelines[p.room_id] = RoomTimeline(list(p.fixed_timeline), False, None)

        lazy = room_filter.state.lazy_load_members
        modes: dict[str, str] = {}
        for room_id, p in plans_by_room.items():
            tl = timelines[room_id]
            if p.fixed_timeline is not None:
                modes[room_id] = "none"
            elif p.full_state:
                modes[room_id] = "full"
            elif p.since is not None and (tl.limited or tl.hid_state):
                modes[room_id] = "delta"
            else:
                modes[room_id] = "none"
        need_start = [
            r for r, m in modes.items() if m != "none" or (lazy and timelines[r].events)
        ]
        start_maps, since_maps = await self._state_maps(
            need_start, [r for r, m in modes.items() if m == "delta"], plans_by_room, timelines
        )

        selected: dict[str, dict[StateKey, str]] = {}
        for room_id, p in plans_by_room.items():
            selected[room_id] = self._select_state(
                config, room_id, modes[room_id], timelines[room_id], start_maps.get(room_id, {}),
                since_maps.get(room_id, {}), since_pos,
            )

        summaries = await self._summaries(config, plans_by_room, modes, timelines, selected)
        if lazy:
            for room_id, summary in summaries.items():
                for hero in summary.get("m.heroes", ()):
                    self._add_member(config, room_id, hero, modes[room_id], timelines[room_id],
                                     start_maps.get(room_id, {}), selected[room_id], since_pos)

        state_filter = room_filter.state
        check_state = not allows_every_event(state_filter)
        all_ids = [eid for ids in selected.values() for eid in ids.values()]
        state_events = await self._events.get_events(all_ids)
        out: dict[str, RoomSyncData] = {}
        for room_id, p in plans_by_room.items():
            tl = timelines[room_id]
            state = [
                state_events[eid] for eid in selected[room_id].values()
                if eid in state_events and (not check_state or state_filter.allows(state_events[eid]))
            ]
            state.sort(key=lambda e: e.internal_metadata.stream_ordering or 0)
            if lazy:
                sent = {e.state_key: e.event_id for e in state if e.type == MEMBER and e.state_key is not None}
                sent.update(
                    (e.state_key, e.event_id) for e in tl.events if e.type == MEMBER and e.state_key is not None
                )
                self._lazy.record(config.user_id, config.device_id, room_id, sent, now_pos)
            out[room_id] = RoomSyncData(
                TimelineBatch(tl.events, tl.limited, tl.prev_batch), state, summaries.get(room_id)
            )
        return out

    # -- state ----------------------------------------------------------------

    async def _state_maps(
        self,
        start_rooms: list[str],
        delta_rooms: list[str],
        plans: Mapping[str, RoomPlan],
        timelines: Mapping[str, RoomTimeline],
    ) -> tuple[dict[str, StateMap], dict[str, StateMap]]:
        """The state at each timeline's start, and at the client's position for delta rooms."""
        before: dict[str, str] = {}
        last_bounds: dict[str, tuple[Optional[int], int]] = {}
        for room_id in start_rooms:
            tl = timelines[room_id]
            if tl.events:
                before[room_id] = tl.events[0].event_id
            else:
                last_bounds[room_id] = (None, plans[room_id].upper)
        since_bounds: dict[str, tuple[Optional[int], int]] = {}
        for room_id in delta_rooms:
            since = plans[room_id].since
            if since is not None:
                since_bounds[room_id] = (None, since)
        after_start = await self._last_event_ids(last_bounds)
        after_since = await self._last_event_ids(since_bounds)
        if not before and not after_start and not after_since:
            return {r: {} for r in last_bounds}, {r: {} for r in since_bounds}

        groups_before = (
            await self._state_groups.get_state_groups_for_events(before.values(), before=True) if before else {}
        )
        after_ids = [*after_start.values(), *after_since.values()]
        groups_after = await self._state_groups.get_state_groups_for_events(after_ids) if after_ids else {}
        group_maps = await self._state_groups.get_state_ids_for_groups(
            {*groups_before.values(), *groups_after.values()}
        )
        empty: StateMap = {}

        def state_of(groups: Mapping[str, int], event_id: Optional[str]) -> StateMap:
            if event_id is None or event_id not in groups:
                return empty
            return group_maps.get(groups[event_id], empty)

        start_maps = {r: state_of(groups_before, before[r]) for r in before}
        start_maps.update({r: state_of(groups_after, after_start.get(r)) for r in last_bounds})
        since_maps = {r: state_of(groups_after, after_since.get(r)) for r in since_bounds}
        return start_maps, since_maps

    async def _last_event_ids(self, bounds: Mapping[str, tuple[Optional[int], int]]) -> dict[str, str]:
        if not bounds:
            return {}
        rows = await self._events.get_recent_timeline_rows(bounds, 1)
        return {room_id: r[0].event_id for room_id, r in rows.items() if r}

    def _select_state(
        self,
        config: SyncConfig,
        room_id: str,
        mode: str,
        tl: RoomTimeline,
        start: StateMap,
        at_since: StateMap,
        since_pos: Optional[int],
    ) -> dict[StateKey, str]:
        """Which state event ids the room's ``state`` section carries (before the event-level filter)."""
        if mode == "full":
            base: Mapping[StateKey, str] = start
        elif mode == "delta":
            base = {k: v for k, v in start.items() if at_since.get(k) != v}
        else:
            base = {}
        state_filter = config.filter.room.state
        if state_filter.lazy_load_members:
            chosen = {k: v for k, v in base.items() if k[0] != MEMBER}
            if mode == "delta":
                # Membership changes in the gap are never redundant.
                chosen.update((k, v) for k, v in base.items() if k[0] == MEMBER)
            needed = {e.sender for e in tl.events}
            if mode == "full":
                needed.add(config.user_id)
            for member in needed:
                self._add_member(config, room_id, member, mode, tl, start, chosen, since_pos)
        else:
            chosen = dict(base)
        chosen.update(_hidden_state_changes(tl))
        timeline_ids = {e.event_id for e in tl.events}
        return {k: v for k, v in chosen.items() if v not in timeline_ids and state_filter.allows_type(k[0])}

    def _add_member(
        self,
        config: SyncConfig,
        room_id: str,
        member: str,
        mode: str,
        tl: RoomTimeline,
        start: StateMap,
        chosen: dict[StateKey, str],
        since_pos: Optional[int],
    ) -> None:
        key = (MEMBER, member)
        event_id = start.get(key)
        if event_id is None or key in chosen:
            return
        if any(e.event_id == event_id for e in tl.events):
            return
        state_filter = config.filter.room.state
        if (
            mode != "full"
            and not state_filter.include_redundant_members
            and self._lazy.is_redundant(config.user_id, config.device_id, room_id, member, event_id, since_pos)
        ):
            return
        chosen[key] = event_id

    # -- summaries --------------------------------------------------------------

    async def _summaries(
        self,
        config: SyncConfig,
        plans: Mapping[str, RoomPlan],
        modes: Mapping[str, str],
        timelines: Mapping[str, RoomTimeline],
        selected: Mapping[str, Mapping[StateKey, str]],
    ) -> dict[str, JsonDict]:
        """``summary`` for joined rooms that are new to the client or whose membership changed."""
        rooms = [
            r for r, p in plans.items()
            if p.joined and (
                modes[r] == "full"
                or p.members_resynced
                or any(e.type == MEMBER for e in timelines[r].events)
                or any(k[0] == MEMBER for k in selected[r])
            )
        ]
        if not rooms:
            return {}
        counts = await self._current_state.get_member_counts(rooms)
        name_ids = await self._current_state.get_current_state_ids_of_types(rooms, _NAME_TYPES)
        name_events = await self._events.get_events(eid for ids in name_ids.values() for eid in ids.values())
        unnamed = []
        for room_id in rooms:
            named = False
            for (t, _), eid in name_ids.get(room_id, {}).items():
                ev = name_events.get(eid)
                field = "name" if t == "m.room.name" else "alias"
                if ev is not None and isinstance(ev.content.get(field), str) and ev.content[field]:
                    named = True
            if not named:
                unnamed.append(room_id)
        heroes = await self._current_state.get_heroes(unnamed, config.user_id) if unnamed else {}
        out: dict[str, JsonDict] = {}
        for room_id in rooms:
            summary: JsonDict = {}
            if not plans[room_id].partial_state:
                joined, invited = counts.get(room_id, (0, 0))
                summary = {"m.joined_member_count": joined, "m.invited_member_count": invited}
            if room_id in heroes:
                summary["m.heroes"] = heroes[room_id]
            out[room_id] = summary
        return out

    # -- unsigned ---------------------------------------------------------------

    async def unsigned_extras(
        self, config: SyncConfig, timeline_events: Iterable[Event]
    ) -> dict[str, JsonDict]:
        """``prev_content``/``replaces_state`` of timeline state events; ``transaction_id`` of the device's own."""
        events = list(timeline_events)
        extras: dict[str, JsonDict] = {}
        state_ids = [e.event_id for e in events if e.is_state()]
        replaced: dict[str, str] = {}
        missing = []
        for eid in state_ids:
            cached = self._replaced.get(eid)
            if cached is None:
                missing.append(eid)
            elif cached:
                replaced[eid] = cached
        if missing:
            found = await self._current_state.get_replaced_state_event_ids(missing)
            for eid in missing:
                prev = found.get(eid)
                self._replaced.set(eid, prev or "")
                if prev:
                    replaced[eid] = prev
        if replaced:
            prev_events = await self._events.get_events(replaced.values())
            for eid, prev_id in replaced.items():
                prev_event = prev_events.get(prev_id)
                if prev_event is not None:
                    extras[eid] = {
                        "replaces_state": prev_id,
                        "prev_content": prev_event.content,
                        "prev_sender": prev_event.sender,
                    }
        if config.device_id is not None:
            own = [e for e in events if e.sender == config.user_id]
            lookup = []
            for e in own:
                meta = e.internal_metadata
                if meta.txn_id is not None and meta.device_id == config.device_id:
                    extras.setdefault(e.event_id, {})["transaction_id"] = meta.txn_id
                elif meta.txn_id is None:
                    lookup.append(e.event_id)
            if lookup:
                txn_ids = await self._txn_ids.get_txn_ids_for_events(config.user_id, config.device_id, lookup)
                for eid, txn_id in txn_ids.items():
                    extras.setdefault(eid, {})["transaction_id"] = txn_id
        return extras

    async def redactions_of(self, events: Iterable[Event]) -> dict[str, Event]:
        """``{event_id: redaction event}`` for the redacted ones among ``events``."""
        wanted = {}
        for e in events:
            redacted_by = e.unsigned.get("redacted_by")
            if isinstance(redacted_by, str):
                wanted[e.event_id] = redacted_by
        if not wanted:
            return {}
        redactions = await self._events.get_events(wanted.values())
        return {eid: redactions[rid] for eid, rid in wanted.items() if rid in redactions}
