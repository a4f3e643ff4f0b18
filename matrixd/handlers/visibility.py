"""History visibility: which room events a user may see (``m.room.history_visibility``).

The decision for an event uses the room state *before* it (the
``history_visibility`` in force when it was added to the DAG and the user's
membership then); the spec's rules, in order:

1. ``world_readable``: allow;
2. the user's membership was ``join``: allow;
3. ``shared``, and the user joined at any point after the event: allow;
4. the membership was ``invite`` and the visibility ``invited``: allow;
5. otherwise deny.

An ``m.room.history_visibility`` event is visible if the rules allow it under
the visibility before *or* after it; the user's own ``m.room.member`` events
if they allow it under the membership before *or* after it.  A peeking user
(not a member) only ever sees ``world_readable`` history.

Batches are cheap: one query maps the events to their state groups, only the
two relevant entries of each group (visibility, the user's membership) are
read, and cached (state groups never change), and the "joined after" history is read once
per room, only when a ``shared`` event needs it.  Outliers, rejected and
soft-failed events are never shown.  Redacted events come pruned from the
event store and are filtered like any other.
"""

from __future__ import annotations

from typing import Optional, Sequence

from matrixd.events.event import Event
from matrixd.storage.cache import LruCache
from matrixd.storage.events import EventStore
from matrixd.storage.state import StateGroupStore
from matrixd.storage.state_lookup import StateEntryStore
from matrixd.storage.visibility import VisibilityStore

HISTORY_VISIBILITY = "m.room.history_visibility"
MEMBER = "m.room.member"
WORLD_READABLE, SHARED, INVITED, JOINED = "world_readable", "shared", "invited", "joined"
KNOWN_VISIBILITIES = frozenset({WORLD_READABLE, SHARED, INVITED, JOINED})
#: The state before a room's create event.
_NO_STATE = -1


def visibility_of(content: object) -> str:
    """The visibility an event content sets; anything unknown counts as ``shared``."""
    if isinstance(content, dict):
        value = content.get("history_visibility")
        if isinstance(value, str) and value in KNOWN_VISIBILITIES:
            return value
    return SHARED


def allowed(visibility: str, membership: Optional[str], *, joined_after: bool, is_peeking: bool) -> bool:
    """The spec's rules 1-5 for one (visibility, membership at the event) pair."""
    if visibility == WORLD_READABLE:
        return True
    if is_peeking:
        return False
    if membership == "join":
        return True
    if visibility == SHARED and joined_after:
        return True
    return visibility == INVITED and membership == "invite"


def is_event_visible(
    event: Event,
    user_id: str,
    visibility_before: str,
    membership_before: Optional[str],
    *,
    joined_after: bool,
    is_peeking: bool = False,
) -> bool:
    """Whether ``user_id`` may see ``event`` given the facts of the state before it."""
    if allowed(visibility_before, membership_before, joined_after=joined_after, is_peeking=is_peeking):
        return True
    if event.type == HISTORY_VISIBILITY and event.state_key == "":
        return allowed(visibility_of(event.content), membership_before, joined_after=joined_after,
                       is_peeking=is_peeking)
    if event.type == MEMBER and event.state_key == user_id:
        return allowed(visibility_before, event.membership, joined_after=joined_after, is_peeking=is_peeking)
    return False


class VisibilityFilter:
    """Filters events down to those a user may see.

    Args:
        events: the event store (loads the state events holding the facts).
        state: the state group store (which group is before each event).
        state_entries: reads the two keys the rules need from each group.
        visibility_store: the users' join history.
        cache_size: how many (state group) and (state group, user) facts to keep.
    """

    def __init__(
        self, *, events: EventStore, state: StateGroupStore, state_entries: StateEntryStore,
        visibility_store: VisibilityStore, cache_size: int = 100_000,
    ) -> None:
        self._events = events
        self._state = state
        self._entries = state_entries
        self._store = visibility_store
        self._visibility_cache: LruCache[int, str] = LruCache("history_visibility_at_group", cache_size)
        # "" stands for "no membership" so a cache miss (None) stays distinguishable.
        self._membership_cache: LruCache[tuple[int, str], str] = LruCache("membership_at_group", cache_size)

    async def filter_events_for_client(
        self, user_id: str, events: Sequence[Event], *, is_peeking: bool = False
    ) -> list[Event]:
        """The events of ``events`` (any rooms, any order) ``user_id`` may see, in the given order."""
        candidates = [
            e for e in events
            if not e.internal_metadata.outlier and not e.rejected and not e.internal_metadata.soft_failed
        ]
        if not candidates:
            return []
        group_of = await self._groups_before(candidates)
        facts = await self._facts(user_id, {g for g in group_of.values() if g != _NO_STATE})
        facts[_NO_STATE] = (SHARED, None)

        joins: Optional[dict[str, int]] = None
        result: list[Event] = []
        for event in candidates:
            group = group_of.get(event.event_id)
            if group is None:
                continue
            visibility, membership = facts[group]
            joined_after = False
            if visibility == SHARED and membership != "join" and not is_peeking:
                if joins is None:
                    joins = await self._store.get_last_join_stream_orderings(
                        user_id, {e.room_id for e in candidates}
                    )
                last_join = joins.get(event.room_id)
                position = event.internal_metadata.stream_ordering
                joined_after = last_join is not None and position is not None and last_join > position
            if is_event_visible(event, user_id, visibility, membership, joined_after=joined_after,
                                is_peeking=is_peeking):
                result.append(event)
        return result

    async def _groups_before(self, events: Sequence[Event]) -> dict[str, int]:
        """The state group before each event (``_NO_STATE`` for create events); events without one are absent."""
        ids = [e.event_id for e in events]
        groups = dict(await self._state.get_state_groups_for_events(ids, before=True))
        lacking = [e for e in events if e.event_id not in groups]
        if lacking:
            # The create event has no state before it; any other event lacking a
            # "before" group is judged by the state after it, which differs at
            # most in the event's own key (covered by the before-or-after rules).
            after = await self._state.get_state_groups_for_events(
                [e.event_id for e in lacking if e.type != "m.room.create"]
            )
            for e in lacking:
                if e.type == "m.room.create" and e.state_key == "":
                    groups[e.event_id] = _NO_STATE
                elif e.event_id in after:
                    groups[e.event_id] = after[e.event_id]
        return groups

    async def _facts(self, user_id: str, groups: set[int]) -> dict[int, tuple[str, Optional[str]]]:
        """``{group: (history visibility, user's membership)}`` for the state of each group."""
        result: dict[int, tuple[str, Optional[str]]] = {}
        missing: list[int] = []
        for group in groups:
            visibility = self._visibility_cache.get(group)
            membership = self._membership_cache.get((group, user_id))
            if visibility is None or membership is None:
                missing.append(group)
            else:
                result[group] = (visibility, membership or None)
        if not missing:
            return result
        keys = [(HISTORY_VISIBILITY, ""), (MEMBER, user_id)]
        entries = await self._entries.get_state_entries({group: keys for group in missing})
        wanted: dict[int, tuple[Optional[str], Optional[str]]] = {
            group: (found.get(keys[0]), found.get(keys[1])) for group, found in entries.items()
        }
        event_ids = {eid for pair in wanted.values() for eid in pair if eid is not None}
        loaded = await self._events.get_events(event_ids)
        for group, (hv_id, member_id) in wanted.items():
            hv_event = loaded.get(hv_id) if hv_id is not None else None
            member_event = loaded.get(member_id) if member_id is not None else None
            visibility = visibility_of(hv_event.content) if hv_event is not None else SHARED
            membership = (member_event.membership if member_event is not None else None) or ""
            self._visibility_cache.set(group, visibility)
            self._membership_cache.set((group, user_id), membership)
            result[group] = (visibility, membership or None)
        return result
