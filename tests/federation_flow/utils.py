"""Shared set-up for federation flow tests: events built and signed as a fake remote server would."""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Optional, Sequence

from matrixd.events.builder import create_local_event
from matrixd.events.event import Event, JsonDict
from matrixd.state.auth import auth_types_for_event
from matrixd.testing.federation import FakeRemoteServer
from matrixd.testing.homeserver import TestHomeserver

_txn_counter = itertools.count()


def remote_event(
    hs: TestHomeserver,
    remote: FakeRemoteServer,
    room_id: str,
    sender: str,
    event_type: str,
    content: Mapping[str, Any],
    state_key: Optional[str] = None,
    *,
    prev_events: Optional[Sequence[Event]] = None,
    state: Optional[Mapping[tuple[str, str], str]] = None,
    depth: Optional[int] = None,
    ts: int = 0,
) -> Event:
    """An event of ``remote`` in a room ``hs`` holds, on ``prev_events`` (default: the room's extremities).

    Its auth events are chosen from ``state`` (default: the room's current state).
    """
    core = hs.components.core
    st = core.stores
    rv = hs.run(st.rooms.get_room_version(room_id))
    if prev_events is None:
        prev_ids = hs.run(st.events.get_latest_event_ids_in_room(room_id))
        prev_events = list(hs.run(st.events.get_events(prev_ids)).values())
    if state is None:
        state = hs.run(st.current_state.get_current_state_ids(room_id))
    draft_pdu: JsonDict = {"type": event_type, "sender": sender, "content": dict(content), "room_id": room_id}
    if state_key is not None:
        draft_pdu["state_key"] = state_key
    draft = Event(draft_pdu, rv, event_id="$draft")
    keys = set(auth_types_for_event(rv, draft)) | {("m.room.create", "")}
    cited_ids = [state[k] for k in sorted(keys) if k in state
                 and not (k == ("m.room.create", "") and rv.room_id_is_create_event_hash)]
    auth_events = list(hs.run(st.events.get_events(cited_ids)).values())
    return create_local_event(
        rv, event_type=event_type, sender=sender, room_id=room_id, content=content, state_key=state_key,
        prev_events=prev_events, auth_events=auth_events,
        depth=depth if depth is not None else max((e.depth for e in prev_events), default=0) + 1,
        origin_server_ts=1_000_000 + ts, server_name=remote.server_name, signing_key=remote.signing_key,
    )


def send_transaction(hs: TestHomeserver, remote: FakeRemoteServer, pdus: Sequence[JsonDict],
                     edus: Sequence[JsonDict] = (), txn_id: Optional[str] = None) -> Any:
    """PUT /send from ``remote`` with these PDUs; returns the channel."""
    txn = txn_id or f"t{next(_txn_counter)}"
    body = {"origin": remote.server_name, "origin_server_ts": 1_000_000, "pdus": list(pdus), "edus": list(edus)}
    return remote.request(hs, "PUT", f"/_matrix/federation/v1/send/{txn}", body)
