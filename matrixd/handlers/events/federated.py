"""Persisting events received from other servers: what the room's current state becomes.

A received event may extend only some of the room's forward extremities (or
an old part of the DAG); the room's state is then the resolution of the
states after the other forward extremities and the state after the event
(not of the current state, itself a resolution, against the latter) — the
same rule as for local events (``EventCreationHandler.current_state_after``).
Rejected, soft-failed and backfilled events never change the current state.  Callers hold the room lock.
"""

from __future__ import annotations

from typing import Optional

from matrixd.events.event import Event, StateMap
from matrixd.handlers.events.persister import EventPersister, PersistedEvent
from matrixd.handlers.events.redaction_power import sender_can_redact_others
from matrixd.handlers.events.state_calc import StateCalculator
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore


class ReceivedEventPersister:
    def __init__(
        self,
        *,
        events: EventStore,
        current_state: CurrentStateStore,
        state_calc: StateCalculator,
        persister: EventPersister,
    ) -> None:
        self._events = events
        self._current = current_state
        self._state_calc = state_calc
        self._persister = persister

    @property
    def persister(self) -> EventPersister:
        return self._persister

    async def persist(
        self,
        event: Event,
        state_before: StateMap,
        group_before: Optional[int],
        *,
        backfilled: bool = False,
        current_state: Optional[StateMap] = None,
    ) -> PersistedEvent:
        """Persist ``event`` (a timeline event whose state before is ``state_before``).

        ``current_state`` forces the room's new current state (a remote join,
        where the room's state is exactly the state after the join).
        """
        new_current: Optional[StateMap] = None
        accepted = not event.rejected and not event.internal_metadata.soft_failed
        if accepted and not backfilled:
            state_after = dict(state_before)
            if event.is_state():
                state_after[event.state_key_tuple()] = event.event_id
            if current_state is not None:
                new_current = current_state
            else:
                extremities = set(await self._events.get_latest_event_ids_in_room(event.room_id))
                if extremities <= set(event.prev_event_ids()):
                    new_current = state_after
                else:
                    # The other leaves stay extremities: the room's state is the resolution of the
                    # states at all of them, as a later merge event will compute it.
                    others = extremities - set(event.prev_event_ids())
                    new_current = await self._state_calc.resolve_with_extremities(
                        event.room_id, event.room_version, sorted(others), state_after, {event.event_id: event}
                    )
        redaction_authorised = False
        if event.type == "m.room.redaction" and not event.rejected:
            redaction_authorised = await sender_can_redact_others(
                self._state_calc, event.room_version, event, state_before
            )
        return await self._persister.persist_received_event(
            event, state_before, group_before, new_current_state=new_current, backfilled=backfilled,
            redaction_authorised=redaction_authorised,
        )

    async def persist_outliers(self, events: list[Event], *, out_of_band_membership: bool = False) -> None:
        await self._persister.persist_outliers(events, out_of_band_membership=out_of_band_membership)
