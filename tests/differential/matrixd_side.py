"""matrixd's room core behind the same small interface as :mod:`.synapse_side`."""

from __future__ import annotations

from typing import Collection, Mapping, Optional, Sequence

from matrixd.api.errors import AuthError
from matrixd.events.event import Event, InternalMetadata, JsonDict, StateKey
from matrixd.events.redaction import prune_event_dict
from matrixd.events.room_versions import RoomVersion
from matrixd.state import auth as mx_auth
from matrixd.state.resolution import resolve_state

StateMapIds = Mapping[StateKey, str]


class MatrixdRoomCore:
    """One room as matrixd sees it: its own Event objects carrying its own rejections."""

    def __init__(self, room_version: RoomVersion, room_id: str) -> None:
        self.rv = room_version
        self.room_id = room_id
        self.events: dict[str, Event] = {}
        self.fetches = 0

    def _own(self, event: Event, rejected_reason: Optional[str] = None) -> Event:
        meta = InternalMetadata()
        meta.rejected_reason = rejected_reason
        return Event(event.get_pdu_json(), self.rv, event_id=event.event_id, internal_metadata=meta)

    def pruned(self, event: Event) -> JsonDict:
        """The redacted PDU (without ``unsigned``), by matrixd's redaction algorithm."""
        d = prune_event_dict(self.rv, event.get_pdu_json())
        d.pop("unsigned", None)
        return d

    def add_outlier(self, event: Event) -> None:
        self.events[event.event_id] = self._own(event)

    def auth_types(self, event: Event) -> set[StateKey]:
        return set(mx_auth.auth_types_for_event(self.rv, event))

    async def fetch_events(self, event_ids: Collection[str]) -> Mapping[str, Event]:
        self.fetches += 1
        return {e: self.events[e] for e in event_ids if e in self.events}

    async def resolve(self, state_sets: Sequence[StateMapIds]) -> dict[StateKey, str]:
        return dict(await resolve_state(self.room_id, self.rv, state_sets, self.fetch_events))

    def _create_event(self) -> Optional[Event]:
        """The room's create event, which v12 events do not list but the rules need."""
        if not self.rv.room_id_is_create_event_hash:
            return None
        return self.events.get("$" + self.room_id[1:])

    async def check(self, event: Event, state_before: StateMapIds) -> Optional[str]:
        """Accept (None) or reject (the reason): the auth rules against the event's
        auth_events, then against the state before it; then remember the outcome."""
        reason: Optional[str] = None
        create = self._create_event()
        try:
            auth_events = {a: self.events[a] for a in event.auth_event_ids() if a in self.events}
            mx_auth.check_state_independent_auth_rules(self.rv, event, auth_events, create)
            by_key = {e.state_key_tuple(): e for e in auth_events.values() if e.is_state()}
            mx_auth.check_state_dependent_auth_rules(self.rv, event, by_key, create)
            wanted = mx_auth.auth_types_for_event(self.rv, event)
            from_state = {k: self.events[state_before[k]] for k in wanted if k in state_before}
            mx_auth.check_state_dependent_auth_rules(self.rv, event, from_state, create)
        except AuthError as e:
            reason = f"{type(e).__name__}: {e.msg}"
        self.events[event.event_id] = self._own(event, reason)
        return reason
