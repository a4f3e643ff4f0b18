"""``/sync``: what changed for a user between two stream tokens, and waiting for it.

A sync covers the positions ``(since, now]`` of every stream, where ``now``
is the notifier's token when the computation starts: every row at or below
it is committed, so nothing is missed and ``now`` becomes ``next_batch``.
A long-poll captures the notifier's sequence number *before* computing,
then waits on the user's keys (the user id and the joined rooms); a wake-up
is only a hint, so it recomputes and keeps waiting until something is there
for the user or the timeout passes.
"""

from __future__ import annotations

import logging
from typing import Iterable, Optional

import attrs

from matrixd.events.event import Event
from matrixd.handlers.e2e.sync_source import E2ESyncSource
from matrixd.handlers.filtering import EventFilter
from matrixd.handlers.presence import PresenceHandler, format_presence
from matrixd.handlers.push_rules import PushRulesHandler
from matrixd.handlers.sync.metrics import SYNC_NONEMPTY, SYNC_REQUESTS, SYNC_WAKEUPS
from matrixd.handlers.sync.lazy_members import LazyMembersCache
from matrixd.handlers.sync.rooms import RoomPlan, RoomSyncer
from matrixd.handlers.sync.stripped import stripped_state_for
from matrixd.handlers.sync.timeline import TimelineLoader
from matrixd.handlers.sync.types import (
    EventVisibility,
    InvitedRoomResult,
    JoinedRoomResult,
    KnockedRoomResult,
    LeftRoomResult,
    SyncConfig,
    SyncResult,
    UnreadCountSource,
)
from matrixd.handlers.typing import TypingHandler
from matrixd.storage.account_data import AccountDataStore, UserAccountData
from matrixd.storage.cache import LruCache
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.forgotten import ForgottenRoomsStore
from matrixd.storage.models import MembershipInfo
from matrixd.storage.partial_state import PartialStateStore
from matrixd.storage.presence import PresenceStore
from matrixd.storage.push_rules import PushRulesStore
from matrixd.storage.receipts import ReceiptRow, ReceiptStore
from matrixd.storage.state import StateGroupStore
from matrixd.storage.txn_ids import TxnIdStore
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import STREAM_ORDER, StreamName, StreamToken
from matrixd.types import JsonDict
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

#: How long a sync waits for this process to reach a token issued by one that is ahead.
TOKEN_CATCH_UP_SECONDS = 10.0
#: Longest long-poll honoured.
MAX_TIMEOUT_MS = 10 * 60 * 1000
#: Presence stream rows read per query when catching a client up.
_PRESENCE_PAGE = 5000
#: ``(user, rooms, events position, receipts position) -> (weight, unread counts)``.
UnreadCache = LruCache[
    tuple[str, tuple[str, ...]], tuple[int, tuple[int, int], dict[str, dict[str, tuple[int, int]]]]
]


@attrs.frozen(slots=True)
class SyncStores:
    events: EventStore
    state_groups: StateGroupStore
    current_state: CurrentStateStore
    forgotten: ForgottenRoomsStore
    receipts: ReceiptStore
    account_data: AccountDataStore
    presence: PresenceStore
    push_rules: PushRulesStore
    txn_ids: TxnIdStore
    partial_state: Optional[PartialStateStore] = None


class SyncHandler:
    """Computes sync responses; one per process that serves ``/sync``."""

    def __init__(
        self,
        *,
        clock: Clock,
        notifier: Notifier,
        stores: SyncStores,
        typing: TypingHandler,
        presence: PresenceHandler,
        push_rules: PushRulesHandler,
        visibility: EventVisibility,
        e2e: Optional[E2ESyncSource] = None,
    ) -> None:
        self._clock = clock
        self._e2e = e2e
        self._notifier = notifier
        self._stores = stores
        self._typing = typing
        self._presence = presence
        self._push_rules = push_rules
        self.lazy_members = LazyMembersCache()
        self.unread_counts: Optional[UnreadCountSource] = None
        self._unread_cache: UnreadCache = (
            # Weighted by rooms (key and value): entries matter only until the next event or receipt.
            LruCache("sync_unread_counts", 5_000, size_of=lambda entry: entry[0])
        )
        self._rooms = RoomSyncer(
            events=stores.events,
            state_groups=stores.state_groups,
            current_state=stores.current_state,
            txn_ids=stores.txn_ids,
            timelines=TimelineLoader(stores.events, visibility),
            lazy_members=self.lazy_members,
        )

    async def wait_for_sync(
        self,
        config: SyncConfig,
        since: Optional[StreamToken],
        timeout_ms: int,
        full_state: bool = False,
        set_presence: str = "online",
    ) -> SyncResult:
        """The sync response, waiting up to ``timeout_ms`` for something to report (incremental only)."""
        kind = "initial" if since is None else "full_state" if full_state else "incremental"
        SYNC_REQUESTS.labels(kind).inc()
        async with self._presence.user_syncing(config.user_id, set_presence):
            if since is not None and since.is_after(self._notifier.current_token):
                await self._notifier.wait_for_token(since, TOKEN_CATCH_UP_SECONDS)
            if self._e2e is not None and config.device_id is not None and since is not None:
                # The client came back with this token: it has the to-device messages before it.
                await self._e2e.ack_to_device(config.user_id, config.device_id, since.to_device)
            result = await self._wait(config, since, timeout_ms, full_state)
            if not result.is_empty():
                SYNC_NONEMPTY.labels(kind).inc()
            if self._e2e is not None and config.device_id is not None:
                counts, unused = await self._e2e.get_key_counts(config.user_id, config.device_id)
                result.device_one_time_keys_count = counts
                result.device_unused_fallback_key_types = unused
            return result

    async def _wait(
        self, config: SyncConfig, since: Optional[StreamToken], timeout_ms: int, full_state: bool
    ) -> SyncResult:
        seq = self._notifier.current_seq()
        result = await self.compute(config, since, self._now(since), full_state)
        if since is None or full_state or timeout_ms <= 0 or not result.is_empty():
            return result
        deadline = self._clock.time() + min(timeout_ms, MAX_TIMEOUT_MS) / 1000.0
        while result.is_empty():
            remaining = deadline - self._clock.time()
            if remaining <= 0:
                break
            keys = [config.user_id, *result.joined_room_ids]
            woken = await self._notifier.wait_for_keys(keys, seq, remaining)
            if not woken:
                break
            SYNC_WAKEUPS.inc()
            seq = self._notifier.current_seq()
            result = await self.compute(config, since, self._now(since), full_state)
        return result

    def _now(self, since: Optional[StreamToken]) -> StreamToken:
        """The notifier's token, never behind the client's (a token from a process ahead of us)."""
        now = self._notifier.current_token
        if since is not None:
            for stream in STREAM_ORDER:
                now = now.copy_and_advance(stream, since.get(stream))
        return now

    async def compute(
        self, config: SyncConfig, since: Optional[StreamToken], now: StreamToken, full_state: bool = False
    ) -> SyncResult:
        """One sync response for ``(since, now]`` (``since`` None: an initial sync)."""
        if since is None:
            self.lazy_members.reset(config.user_id, config.device_id)
        return await _SyncComputation(self, config, since, now, full_state).run()

    @property
    def unread_cache(self) -> "UnreadCache":
        return self._unread_cache

    def set_unread_counts(self, source: UnreadCountSource) -> None:
        """Fill ``unread_notifications`` from ``source`` (the push area); without one they are zero."""
        self.unread_counts = source

    # Accessors for the computation (kept off the public surface).
    @property
    def stores(self) -> SyncStores:
        return self._stores

    @property
    def rooms(self) -> RoomSyncer:
        return self._rooms

    @property
    def typing(self) -> TypingHandler:
        return self._typing

    @property
    def presence(self) -> PresenceHandler:
        return self._presence

    @property
    def push_rules(self) -> PushRulesHandler:
        return self._push_rules

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def e2e(self) -> Optional[E2ESyncSource]:
        return self._e2e


class _SyncComputation:
    """The state of one sync computation; :meth:`run` fills a :class:`SyncResult`."""

    def __init__(
        self, handler: SyncHandler, config: SyncConfig, since: Optional[StreamToken], now: StreamToken,
        full_state: bool,
    ) -> None:
        self.h = handler
        self.s = handler.stores
        self.config = config
        self.user_id = config.user_id
        self.since = since
        self.now = now
        self.full_state = full_state
        self.filter = config.filter
        self.since_events = since.events if since is not None else None
        # Lazy-loading syncs only: joined rooms still partial, and those resynced since ``since``.
        self._partial_rooms: set[str] = set()
        self._resynced_rooms: set[str] = set()
        # Non-lazy syncs: rooms shown for the first time since their resync. The client's token may be
        # past events they received while left out, so their timeline starts afresh (as in an initial sync).
        self._shown_after_resync: set[str] = set()

    async def run(self) -> SyncResult:
        result = SyncResult(next_batch=self.now)
        memberships = await self._memberships()
        joined = {r: m for r, m in memberships.items() if m.membership == "join"}
        # Rooms left out while partial stay among the keys a long-poll waits on: their resync wakes it.
        result.joined_room_ids = frozenset(joined)
        resynced = self._shown_after_resync = await self._leave_out_partial_state(joined)
        newly_joined = await self._newly_joined(joined) | resynced
        account_data = await self._account_data(newly_joined)
        left = await self._left_rooms(memberships)

        plans = [self._joined_plan(room_id, m, room_id in newly_joined) for room_id, m in joined.items()]
        plans.extend(left)
        room_data = await self.h.rooms.sync_rooms(self.config, plans, self.now.events, self.since_events)
        timeline_events: list[Event] = [e for d in room_data.values() for e in d.timeline.events]
        result.extra_unsigned = await self.h.rooms.unsigned_extras(self.config, timeline_events)
        state_events = [e for d in room_data.values() for e in d.state]
        result.redacted_because = await self.h.rooms.redactions_of([*timeline_events, *state_events])

        ephemeral = await self._ephemeral(list(joined), newly_joined)
        unread = await self._unread(sorted(joined))
        threaded = self.filter.room.timeline.unread_thread_notifications
        room_filter = self.filter.room
        for room_id in sorted(joined):
            data = room_data[room_id]
            by_thread = unread.get(room_id, {})
            room_result = JoinedRoomResult(
                room_id=room_id,
                timeline=data.timeline,
                state=data.state,
                ephemeral=ephemeral.get(room_id, []),
                account_data=_room_account_data(account_data, room_id, room_filter.account_data),
                summary=data.summary,
                unread_notifications=_unread_json(by_thread, threaded),
                unread_thread_notifications=_thread_unread_json(by_thread) if threaded else None,
            )
            if self.since is None or self.full_state or room_id in newly_joined or room_result.has_updates():
                result.joined.append(room_result)
        for plan in left:
            data = room_data[plan.room_id]
            result.left.append(LeftRoomResult(
                room_id=plan.room_id,
                timeline=data.timeline,
                state=data.state,
                account_data=_room_account_data(account_data, plan.room_id, room_filter.account_data),
            ))
        result.invited, result.knocked = await self._invites_and_knocks(memberships)
        result.account_data = await self._global_account_data(account_data)
        result.presence = await self._presence(joined)
        await self._e2e(result)
        return result

    async def _e2e(self, result: SyncResult) -> None:
        """To-device messages for the device and, incrementally, whose device lists changed."""
        e2e = self.h.e2e
        if e2e is None:
            return
        device_id = self.config.device_id
        if device_id is not None:
            since_pos = self.since.to_device if self.since is not None else 0
            messages, position = await e2e.get_to_device_messages(self.user_id, device_id, since_pos)
            result.to_device = messages
            result.next_batch = result.next_batch.copy_and_replace(StreamName.TO_DEVICE, max(position, since_pos))
        since = self.since
        if since is not None and (self.now.device_lists > since.device_lists or self.now.events > since.events):
            changed, left = await e2e.get_device_list_changes(self.user_id, since, self.now)
            result.device_lists_changed = sorted(changed)
            result.device_lists_left = sorted(left)

    async def _unread(self, room_ids: list[str]) -> dict[str, dict[str, tuple[int, int]]]:
        source = self.h.unread_counts
        if source is None or not room_ids:
            return {}
        # Counts at a token change only with the events (push actions are stored before
        # an event is announced) and receipts positions: a long-poll's first pass and the
        # previous request's woken pass usually ask for the same ones.
        # One entry per user and room list, replaced when the positions move (older ones are dead).
        key = (self.user_id, tuple(room_ids))
        at = (self.now.events, self.now.receipts)
        cached = self.h.unread_cache.get(key)
        if cached is not None and cached[1] == at:
            return cached[2]
        counts = await source.get_unread_counts(self.user_id, room_ids, self.now.events)
        self.h.unread_cache.set(key, (1 + len(room_ids) + len(counts), at, counts))
        return counts

    # -- memberships ----------------------------------------------------------

    async def _memberships(self) -> dict[str, MembershipInfo]:
        """The user's membership of each room as of ``now``, for the rooms the filter allows."""
        cs = self.s.current_state
        rows = await cs.get_local_memberships(self.user_id)
        out = {m.room_id: m for m in rows if m.stream_ordering <= self.now.events}
        late = [m.room_id for m in rows if m.stream_ordering > self.now.events]
        if late:
            # Changed after `now` (not announced yet): report what it was at `now`.
            out.update(await cs.get_memberships_at(self.user_id, late, self.now.events))
        room_filter = self.filter.room
        return {r: m for r, m in out.items() if room_filter.allows_room(r)}

    async def _leave_out_partial_state(self, joined: dict[str, MembershipInfo]) -> set[str]:
        """Drop rooms joined with partial state from ``joined`` (their member list is incomplete) unless the
        filter lazy-loads members; returns the rooms whose resync finished after ``since`` (shown as newly
        joined: the client has not seen them, or saw them without their members).

        A lazy-loading client is shown partial-state rooms, without member counts (see
        ``RoomPlan.partial_state``), and is sent the counts once the resync finishes."""
        store = self.s.partial_state
        if store is None or not joined:
            return set()
        partial, resynced = await store.partial_and_resynced(list(joined), self.since_events, self.now.events)
        if self.filter.room.state.lazy_load_members:
            self._partial_rooms = set(partial)
            self._resynced_rooms = resynced
            return set()
        for room_id in partial:
            del joined[room_id]
        return resynced

    async def _newly_joined(self, joined: dict[str, MembershipInfo]) -> set[str]:
        """Joined rooms the user was not joined to at ``since``."""
        if self.since_events is None:
            return set()
        changed = [r for r, m in joined.items() if m.stream_ordering > self.since_events]
        if not changed:
            return set()
        before = await self.s.current_state.get_memberships_at(self.user_id, changed, self.since_events)
        return {r for r in changed if r not in before or before[r].membership != "join"}

    def _joined_plan(self, room_id: str, m: MembershipInfo, newly_joined: bool) -> RoomPlan:
        # Events after the user's (latest) join are visible to them whatever the history visibility.
        lower = None if room_id in self._shown_after_resync else self.since_events
        check_upto: Optional[int] = m.stream_ordering - 1
        if lower is not None and check_upto is not None and lower >= check_upto:
            check_upto = None
        return RoomPlan(
            room_id=room_id,
            joined=True,
            partial_state=room_id in self._partial_rooms,
            members_resynced=room_id in self._resynced_rooms,
            lower=lower,
            upper=self.now.events,
            full_state=self.since is None or self.full_state or newly_joined,
            since=self.since_events,
            check_visibility_upto=check_upto,
        )

    async def _left_rooms(self, memberships: dict[str, MembershipInfo]) -> list[RoomPlan]:
        """Rooms left (or banned from) since the client's position, or all of them with include_leave."""
        include_all = self.since is None and self.filter.room.include_leave
        candidates = [
            m for m in memberships.values()
            if m.membership in ("leave", "ban")
            and (include_all or (self.since_events is not None and m.stream_ordering > self.since_events))
        ]
        if not candidates:
            return []
        forgotten = await self.s.forgotten.get_forgotten_rooms(self.user_id)
        candidates = [m for m in candidates if m.room_id not in forgotten]
        if not candidates:
            return []
        events = self.s.events
        leave_events = await events.get_events([m.event_id for m in candidates])
        replaced = await self.s.current_state.get_replaced_state_event_ids([m.event_id for m in candidates])
        prev_events = await events.get_events([p for p in replaced.values() if p])
        plans = []
        for m in sorted(candidates, key=lambda m: m.room_id):
            leave = leave_events.get(m.event_id)
            prev_id = replaced.get(m.event_id)
            prev = prev_events.get(prev_id) if prev_id else None
            if leave is None:
                continue
            if prev is None or prev.membership != "join":
                # Never joined (a rejected invite, a withdrawn knock, a ban from outside):
                # the user sees their own leave and nothing of the room.
                plans.append(RoomPlan(m.room_id, False, None, m.stream_ordering, False, None, None, (leave,)))
                continue
            joined_at = prev.internal_metadata.stream_ordering or 0
            was_joined_at_since = self.since_events is not None and joined_at <= self.since_events
            plans.append(RoomPlan(
                room_id=m.room_id,
                joined=False,
                lower=self.since_events,
                upper=m.stream_ordering,
                full_state=self.full_state or not was_joined_at_since,
                since=self.since_events,
                check_visibility_upto=m.stream_ordering,
            ))
        return plans

    async def _invites_and_knocks(
        self, memberships: dict[str, MembershipInfo]
    ) -> tuple[list[InvitedRoomResult], list[KnockedRoomResult]]:
        def is_new(m: MembershipInfo) -> bool:
            return self.since_events is None or m.stream_ordering > self.since_events

        invites = [m for m in memberships.values() if m.membership == "invite" and is_new(m)]
        knocks = [m for m in memberships.values() if m.membership == "knock" and is_new(m)]
        if not invites and not knocks:
            return [], []
        member_events = await self.s.events.get_events([m.event_id for m in [*invites, *knocks]])
        invite_events = {m.room_id: member_events[m.event_id] for m in invites if m.event_id in member_events}
        knock_events = {m.room_id: member_events[m.event_id] for m in knocks if m.event_id in member_events}
        events, cs = self.s.events, self.s.current_state
        invite_state = await stripped_state_for(events, cs, invite_events, "invite_room_state")
        knock_state = await stripped_state_for(events, cs, knock_events, "knock_room_state")
        return (
            [InvitedRoomResult(r, invite_state[r]) for r in sorted(invite_state)],
            [KnockedRoomResult(r, knock_state[r]) for r in sorted(knock_state)],
        )

    # -- ephemeral --------------------------------------------------------------

    async def _ephemeral(self, joined: list[str], newly_joined: set[str]) -> dict[str, list[JsonDict]]:
        """``m.typing`` and ``m.receipt`` per joined room."""
        out: dict[str, list[JsonDict]] = {}
        if not joined:
            return out
        ephemeral_filter = self.filter.room.ephemeral
        full = self.since is None or self.full_state
        since_typing = None if full else self.since.typing if self.since is not None else None
        typing = self.h.typing.get_changed_rooms(joined, since_typing)
        if newly_joined and not full:
            typing.update(self.h.typing.get_changed_rooms(newly_joined, None))
        for room_id, users in typing.items():
            out.setdefault(room_id, []).append({"type": "m.typing", "content": {"user_ids": users}})

        receipts_store = self.s.receipts
        rows: list[ReceiptRow] = []
        if full:
            rows = await receipts_store.get_receipts_for_rooms(joined, self.user_id, to_id=self.now.receipts)
        else:
            assert self.since is not None
            if self.since.receipts < self.now.receipts:
                rows = await receipts_store.get_receipts_for_rooms(
                    joined, self.user_id, self.since.receipts, self.now.receipts
                )
            if newly_joined:
                seen = {r.stream_id for r in rows}
                more = await receipts_store.get_receipts_for_rooms(
                    newly_joined, self.user_id, to_id=self.now.receipts
                )
                rows.extend(r for r in more if r.stream_id not in seen)
        # One m.receipt per room and thread (spec: "batched into one event per room and thread"),
        # so a user's threaded and unthreaded receipts on the same event do not collide.
        by_thread: dict[tuple[str, str], JsonDict] = {}
        for row in rows:
            content = by_thread.setdefault((row.room_id, row.thread_id or ""), {})
            content.setdefault(row.event_id, {}).setdefault(row.receipt_type, {})[row.user_id] = row.data
        for (room_id, _), content in sorted(by_thread.items()):
            out.setdefault(room_id, []).append({"type": "m.receipt", "content": content})

        for room_id, evs in list(out.items()):
            kept = [e for e in evs if ephemeral_filter.allows_json({**e, "room_id": room_id})]
            if ephemeral_filter.limit is not None:
                kept = kept[: ephemeral_filter.limit]
            if kept:
                out[room_id] = kept
            else:
                del out[room_id]
        return out

    # -- account data -----------------------------------------------------------

    async def _account_data(self, newly_joined: set[str]) -> UserAccountData:
        store = self.s.account_data
        if self.since is None or self.full_state:
            return await store.get_for_user(self.user_id, to_id=self.now.account_data)
        data = UserAccountData()
        if self.since.account_data < self.now.account_data:
            data = await store.get_for_user(self.user_id, self.since.account_data, self.now.account_data)
        if newly_joined:
            extra = await store.get_for_user(self.user_id, to_id=self.now.account_data, room_ids=newly_joined)
            for room_id, entries in extra.rooms.items():
                data.rooms.setdefault(room_id, {}).update(entries)
        return data

    async def _global_account_data(self, data: UserAccountData) -> list[JsonDict]:
        events = [{"type": t, "content": c} for t, c in sorted(data.global_data.items())]
        push_changed = self.since is None or self.full_state
        if not push_changed and self.since is not None:
            push_changed = await self.s.push_rules.has_changed_since(
                self.user_id, self.since.push_rules, self.now.push_rules
            )
        if push_changed:
            events.append({
                "type": "m.push_rules",
                "content": await self.h.push_rules.get_push_rules_account_data(self.user_id),
            })
        return [e for e in events if self.filter.account_data.allows_json(e)]

    # -- presence -----------------------------------------------------------------

    async def _presence(self, joined: dict[str, MembershipInfo]) -> list[JsonDict]:
        presence = self.h.presence
        if not presence.enabled:
            return []
        presence_filter = self.filter.presence
        cs = self.s.current_state
        if self.since is None or self.full_state:
            users = await cs.get_joined_users_in_rooms(joined)
            users.add(self.user_id)
            states = await presence.get_states(users)
            chosen = [s for s in states.values() if s.stream_id and s.stream_id <= self.now.presence]
        else:
            if self.since.presence >= self.now.presence:
                return []
            changed = await self._changed_presence_users(self.since.presence, self.now.presence)
            if not changed:
                return []
            visible = []
            for user_id in sorted(changed):
                if user_id == self.user_id or (await cs.get_rooms_for_user(user_id)) & joined.keys():
                    visible.append(user_id)
            states = await presence.get_states(visible)
            chosen = list(states.values())
        now_ms = self.h.clock.time_msec()
        events = [
            {"type": "m.presence", "sender": s.user_id, "content": format_presence(s, now_ms)}
            for s in sorted(chosen, key=lambda s: s.user_id)
        ]
        kept = [e for e in events if presence_filter.allows_json(e)]
        if presence_filter.limit is not None:
            kept = kept[: presence_filter.limit]
        return kept

    async def _changed_presence_users(self, from_id: int, to_id: int) -> set[str]:
        users: set[str] = set()
        while from_id < to_id:
            rows = await self.s.presence.get_updates(from_id, to_id, _PRESENCE_PAGE)
            users.update(r.user_id for r in rows)
            if len(rows) < _PRESENCE_PAGE:
                break
            from_id = rows[-1].stream_id
        return users


def _unread_json(by_thread: dict[str, tuple[int, int]], threaded: bool) -> JsonDict:
    """A room's counts: every thread's summed, or only the main timeline's when threads are apart."""
    counts = [c for t, c in by_thread.items() if not threaded or t == "main"]
    return {"notification_count": sum(c[0] for c in counts), "highlight_count": sum(c[1] for c in counts)}


def _thread_unread_json(by_thread: dict[str, tuple[int, int]]) -> JsonDict:
    return {
        t: {"notification_count": c[0], "highlight_count": c[1]}
        for t, c in sorted(by_thread.items()) if t != "main" and (c[0] or c[1])
    }


def _room_account_data(data: UserAccountData, room_id: str, event_filter: EventFilter) -> list[JsonDict]:
    entries: Iterable[tuple[str, JsonDict]] = sorted(data.rooms.get(room_id, {}).items())
    events = [{"type": t, "content": c} for t, c in entries]
    return [e for e in events if event_filter.allows_json({**e, "room_id": room_id})]
