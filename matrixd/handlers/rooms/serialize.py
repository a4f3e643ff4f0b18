"""Events as a client sees them: the client format plus what this server adds to ``unsigned``.

* ``age`` (from :func:`matrixd.events.client_format.serialize_event`);
* ``prev_content`` for state events: the content of the event this one
  replaced, read from the state before it;
* ``redacted_because``: the redaction that pruned the event;
* ``transaction_id``: only for the device that sent the event with one.

Everything is loaded in batches; ``prev_content`` reads only the replaced
key of each state group (never whole state maps), so serialising the state of
a large room stays proportional to the events serialised.
"""

from __future__ import annotations

from typing import Optional, Sequence

from matrixd.events.client_format import serialize_event
from matrixd.events.event import Event, JsonDict, StateKey
from matrixd.handlers.filtering import apply_event_fields
from matrixd.storage.events import EventStore
from matrixd.storage.state import StateGroupStore
from matrixd.storage.state_lookup import StateEntryStore
from matrixd.storage.txn_ids import TxnIdStore
from matrixd.types import Requester
from matrixd.util.clock import Clock


class ClientEventSerializer:
    def __init__(
        self, *, clock: Clock, events: EventStore, state: StateGroupStore, state_entries: StateEntryStore,
        txn_ids: TxnIdStore,
    ) -> None:
        self._clock = clock
        self._events = events
        self._state = state
        self._entries = state_entries
        self._txn_ids = txn_ids

    async def serialize_events(
        self,
        events: Sequence[Event],
        requester: Optional[Requester],
        *,
        include_room_id: bool = True,
        as_client_event: bool = True,
        event_fields: Optional[Sequence[str]] = None,
    ) -> list[JsonDict]:
        """The client JSON of ``events`` in order, as seen by ``requester`` (None: nobody's own events)."""
        if not events:
            return []
        prev_contents = await self._prev_contents([e for e in events if e.is_state()])
        redactions = await self._redactions(events)
        txn_ids: dict[str, str] = {}
        if requester is not None and requester.device_id is not None:
            own = [e.event_id for e in events if e.sender == requester.user_id]
            if own:
                txn_ids = await self._txn_ids.get_txn_ids_for_events(requester.user_id, requester.device_id, own)

        now = self._clock.time_msec()
        out: list[JsonDict] = []
        for event in events:
            extra: JsonDict = {}
            prev = prev_contents.get(event.event_id)
            if prev is not None:
                extra["prev_content"] = prev
            txn_id = txn_ids.get(event.event_id)
            if txn_id is not None:
                extra["transaction_id"] = txn_id
            redacted_by = event.unsigned.get("redacted_by")
            because = redactions.get(redacted_by) if isinstance(redacted_by, str) else None
            serialized = serialize_event(
                event, now, as_client_event=as_client_event, include_room_id=include_room_id,
                redacted_because=because, extra_unsigned=extra,
            )
            out.append(apply_event_fields(serialized, event_fields))
        return out

    async def serialize_event(
        self, event: Event, requester: Optional[Requester], *, include_room_id: bool = True
    ) -> JsonDict:
        """One event (see :meth:`serialize_events`)."""
        return (await self.serialize_events([event], requester, include_room_id=include_room_id))[0]

    async def _prev_contents(self, state_events: Sequence[Event]) -> dict[str, JsonDict]:
        """``{event_id: content of the state event it replaced}`` (absent when it replaced nothing)."""
        if not state_events:
            return {}
        groups = await self._state.get_state_groups_for_events([e.event_id for e in state_events], before=True)
        if not groups:
            return {}
        wanted: dict[int, set[StateKey]] = {}
        for event in state_events:
            group = groups.get(event.event_id)
            if group is not None:
                wanted.setdefault(group, set()).add(event.state_key_tuple())
        entries = await self._entries.get_state_entries(wanted)
        replaced: dict[str, str] = {}
        for event in state_events:
            group = groups.get(event.event_id)
            prev_id = entries.get(group, {}).get(event.state_key_tuple()) if group is not None else None
            if prev_id is not None and prev_id != event.event_id:
                replaced[event.event_id] = prev_id
        loaded = await self._events.get_events(replaced.values())
        return {eid: loaded[prev].content for eid, prev in replaced.items() if prev in loaded}

    async def _redactions(self, events: Sequence[Event]) -> dict[str, Event]:
        ids = {e.unsigned.get("redacted_by") for e in events}
        wanted = [i for i in ids if isinstance(i, str)]
        if not wanted:
            return {}
        return await self._events.get_events(wanted)
