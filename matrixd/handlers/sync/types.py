"""What a ``/sync`` computes, before it is serialised: rooms by membership, events as :class:`Event`."""

from __future__ import annotations

from typing import Optional, Protocol, Sequence

import attrs

from matrixd.events.event import Event
from matrixd.handlers.filtering import EventFilter, SyncFilter
from matrixd.streams.token import RoomStreamToken, StreamToken
from matrixd.types import JsonDict


def allows_every_event(event_filter: EventFilter) -> bool:
    """Whether the filter lets every event through (so per-event checks can be skipped)."""
    f = event_filter
    return (
        f.types is None and not f.not_types and f.senders is None and not f.not_senders
        and f.rooms is None and not f.not_rooms and f.contains_url is None
    )


class EventVisibility(Protocol):
    """History visibility (``matrixd.handlers.visibility.VisibilityFilter``): which events a user may see."""

    async def filter_events_for_client(
        self, user_id: str, events: Sequence[Event], *, is_peeking: bool = False
    ) -> list[Event]: ...


class UnreadCountSource(Protocol):
    """Unread notification counts (``matrixd.push.counts.UnreadCounter``), wired in by the push area."""

    async def get_unread_counts(
        self, user_id: str, room_ids: Sequence[str], upto: int
    ) -> dict[str, dict[str, tuple[int, int]]]:
        """``{room_id: {thread_id: (notification_count, highlight_count)}}`` (``main``: not in a thread)."""
        ...


class AllVisible:
    """Shows every event: for deployments (and tests) without a history visibility filter."""

    async def filter_events_for_client(
        self, user_id: str, events: Sequence[Event], *, is_peeking: bool = False
    ) -> list[Event]:
        return list(events)


@attrs.frozen(slots=True)
class SyncConfig:
    """Who syncs and with which filter."""

    user_id: str
    device_id: Optional[str]
    filter: SyncFilter
    is_guest: bool = False


@attrs.define
class TimelineBatch:
    """Events oldest first; ``prev_batch`` continues backwards with ``/messages``."""

    events: list[Event]
    limited: bool
    prev_batch: Optional[RoomStreamToken]


@attrs.define
class JoinedRoomResult:
    room_id: str
    timeline: TimelineBatch
    state: list[Event]
    ephemeral: list[JsonDict]
    account_data: list[JsonDict]
    summary: Optional[JsonDict]
    unread_notifications: JsonDict
    #: Per-thread counts, only when the filter asks for ``unread_thread_notifications``.
    unread_thread_notifications: Optional[JsonDict] = None

    def has_updates(self) -> bool:
        return bool(self.timeline.events or self.state or self.ephemeral or self.account_data or self.summary)


@attrs.define
class InvitedRoomResult:
    room_id: str
    invite_state: list[JsonDict]


@attrs.define
class KnockedRoomResult:
    room_id: str
    knock_state: list[JsonDict]


@attrs.define
class LeftRoomResult:
    room_id: str
    timeline: TimelineBatch
    state: list[Event]
    account_data: list[JsonDict]


@attrs.define
class SyncResult:
    """One response; ``extra_unsigned`` holds per-event ``unsigned`` additions (prev_content, transaction_id)."""

    next_batch: StreamToken
    joined: list[JoinedRoomResult] = attrs.field(factory=list)
    invited: list[InvitedRoomResult] = attrs.field(factory=list)
    knocked: list[KnockedRoomResult] = attrs.field(factory=list)
    left: list[LeftRoomResult] = attrs.field(factory=list)
    presence: list[JsonDict] = attrs.field(factory=list)
    account_data: list[JsonDict] = attrs.field(factory=list)
    to_device: list[JsonDict] = attrs.field(factory=list)
    device_lists_changed: list[str] = attrs.field(factory=list)
    device_lists_left: list[str] = attrs.field(factory=list)
    extra_unsigned: dict[str, JsonDict] = attrs.field(factory=dict)
    #: The redaction event of each redacted event sent (``unsigned.redacted_because``).
    redacted_because: dict[str, Event] = attrs.field(factory=dict)
    #: Only with end-to-end encryption wired in (None: the fields are left out).
    device_one_time_keys_count: Optional[dict[str, int]] = None
    device_unused_fallback_key_types: Optional[list[str]] = None
    #: The rooms the user is joined to: the long-poll's wake-up keys (not serialised).
    joined_room_ids: frozenset[str] = frozenset()

    def is_empty(self) -> bool:
        """Nothing for the client: a long-poll keeps waiting."""
        return not (
            self.joined or self.invited or self.knocked or self.left or self.presence or self.account_data
            or self.to_device or self.device_lists_changed or self.device_lists_left
        )
