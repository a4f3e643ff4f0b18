"""Value types passed into and returned by the stores."""

from __future__ import annotations

from typing import Mapping, Optional

import attrs

from matrixd.events.event import StateKey

#: A position in a room's DAG order: ``(topological_ordering, stream_ordering)``,
#: meaning "just after the event with this key" (see EventStore pagination).
TopologicalPosition = tuple[int, int]


@attrs.frozen(slots=True)
class EventContext:
    """What :meth:`EventWriter.persist_events` needs to know about an event besides the event.

    Attributes:
        state_group: the state group of the room state after the event (None
            for outliers, whose state we do not know).
        state_group_before: the state group before the event (for a non-state
            event, the same as ``state_group``); what federation ``/state_ids``
            serves.
        redaction_authorised: for m.room.redaction, whether the sender's power
            level reached the redact level at the redaction's auth state.  From
            room v3 a redaction only applies to an event from another server if
            this is true (same-server redactions always apply).
        out_of_band_membership: an m.room.member event of a local user in a
            room this server is not in (invite or knock over federation, or the
            rejection of one): it sets the user's membership for sync even
            though the room's state is unknown.
    """

    state_group: Optional[int] = None
    state_group_before: Optional[int] = None
    redaction_authorised: bool = False
    out_of_band_membership: bool = False


@attrs.frozen(slots=True)
class StateDelta:
    """A change to a room's current state: keys removed, keys set to new event ids."""

    to_delete: frozenset[StateKey] = frozenset()
    to_insert: Mapping[StateKey, str] = attrs.field(factory=dict)

    @classmethod
    def between(cls, old: Mapping[StateKey, str], new: Mapping[StateKey, str]) -> "StateDelta":
        """The delta that turns state ``old`` into state ``new``."""
        # Set operations on the views run in C: a join to a room of thousands diffs two large maps.
        return cls(to_delete=frozenset(old.keys() - new.keys()), to_insert=dict(new.items() - old.items()))

    def is_empty(self) -> bool:
        return not self.to_delete and not self.to_insert


@attrs.frozen(slots=True)
class CurrentStateChange:
    """One committed change of a room's current state, as the writer's caches apply it."""

    #: The event id each changed key had before (None: the key was not set).
    previous: Mapping[StateKey, Optional[str]]
    #: The keys set, to their new event ids (the others in ``previous`` were removed).
    inserted: Mapping[StateKey, str]
    #: Each member whose membership key changed: joined after the change or not.
    joined: Mapping[str, bool]


@attrs.frozen(slots=True)
class PersistResult:
    """What a persist_events call stored.

    Attributes:
        stream_orderings: the stream ordering of each event written by this
            call (events already stored are absent).
        max_stream_ordering: the largest id allocated for the call (the events
            or backfill stream, by the ``backfilled`` flag); once the call has
            returned, the stream's current token has passed it unless an
            earlier concurrent write is still running.
    """

    stream_orderings: Mapping[str, int]
    max_stream_ordering: int


@attrs.frozen(slots=True)
class MembershipInfo:
    """A user's membership of a room, from the member event that set it."""

    room_id: str
    user_id: str
    membership: str
    event_id: str
    sender: str
    stream_ordering: int


@attrs.frozen(slots=True)
class MemberProfile:
    displayname: Optional[str]
    avatar_url: Optional[str]


@attrs.frozen(slots=True)
class RoomInfo:
    room_id: str
    room_version: str
    creator: Optional[str]
    is_public: bool


@attrs.frozen(slots=True)
class CurrentStateDeltaRow:
    """One change of a room's current state (``event_id`` None: key removed)."""

    stream_id: int
    room_id: str
    type: str
    state_key: str
    event_id: Optional[str]
    prev_event_id: Optional[str]


@attrs.frozen(slots=True)
class EventStreamRow:
    """One row of the events (or backfill) stream, for replication catch-up and notifiers."""

    stream_ordering: int
    event_id: str
    room_id: str
    type: str
    state_key: Optional[str]
    sender: str
    outlier: bool
