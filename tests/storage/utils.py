"""Shared helpers for storage tests: a test database per test and a small event builder."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from matrixd.events.event import Event, JsonDict
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.database import Database
from matrixd.storage.events import EventStore
from matrixd.storage.events_writer import EventWriter, create_event_stream_generators
from matrixd.storage.rooms import RoomStore
from matrixd.storage.state import StateGroupStore
from matrixd.testing.database import make_test_database
from matrixd.util.clock import Clock

SERVER = "test.local"
V10 = KNOWN_ROOM_VERSIONS["10"]
V1 = KNOWN_ROOM_VERSIONS["1"]

_KEEP_TOP = (
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
    "signatures", "depth", "prev_events", "auth_events", "origin_server_ts",
)


def prune_for_tests(pdu: JsonDict, room_version: RoomVersion) -> JsonDict:
    """A cut-down redaction algorithm: enough to tell a redacted event from the original."""
    pruned = {k: v for k, v in pdu.items() if k in _KEEP_TOP}
    content = pdu.get("content") or {}
    pruned["content"] = {"membership": content["membership"]} if pdu.get("type") == "m.room.member" else {}
    return pruned


def make_event(
    event_id: str,
    room_id: str = "!room:test.local",
    type: str = "m.room.message",
    sender: str = "@alice:test.local",
    *,
    state_key: Optional[str] = None,
    content: Optional[JsonDict] = None,
    prev: Sequence[str] = (),
    auth: Sequence[str] = (),
    depth: int = 1,
    redacts: Optional[str] = None,
    room_version: RoomVersion = V10,
    outlier: bool = False,
    rejected_reason: Optional[str] = None,
    soft_failed: bool = False,
) -> Event:
    pdu: dict[str, Any] = {
        "type": type,
        "room_id": room_id,
        "sender": sender,
        "content": content if content is not None else {"body": event_id},
        "prev_events": list(prev),
        "auth_events": list(auth),
        "depth": depth,
        "origin_server_ts": 1_700_000_000_000 + depth,
        "hashes": {"sha256": "x"},
        "signatures": {},
    }
    if room_version.event_format == EventFormat.V1:
        pdu["event_id"] = event_id
        pdu["prev_events"] = [[p, {"sha256": "x"}] for p in prev]
        pdu["auth_events"] = [[a, {"sha256": "x"}] for a in auth]
    if state_key is not None:
        pdu["state_key"] = state_key
    if redacts is not None:
        pdu["redacts"] = redacts
    ev = Event(pdu, room_version, event_id=event_id)
    ev.internal_metadata.outlier = outlier
    ev.internal_metadata.rejected_reason = rejected_reason
    ev.internal_metadata.soft_failed = soft_failed
    return ev


def member_event(event_id: str, user_id: str, membership: str = "join", **kw: Any) -> Event:
    content = {"membership": membership, "displayname": user_id[1:].split(":")[0]}
    return make_event(event_id, type="m.room.member", sender=kw.pop("sender", user_id),
                      state_key=user_id, content=content, **kw)


class StorageTestCase(TestCase):
    """A fresh database and the stores on it, on the real reactor (the DB is the point)."""

    db: Database

    async def setUp(self) -> None:
        self.db = await make_test_database(self, reactor)
        self.clock = Clock(reactor)
        self.events = EventStore(self.db, self.clock, prune_event_dict=prune_for_tests)
        self.state = StateGroupStore(self.db, self.clock)
        self.current_state = CurrentStateStore(self.db, self.clock, self.events)
        self.rooms = RoomStore(self.db, self.clock)
        self.stream_ids, self.backfill_ids = await create_event_stream_generators(self.db)
        self.writer = EventWriter(
            self.db,
            self.clock,
            server_name=SERVER,
            stream_ids=self.stream_ids,
            backfill_ids=self.backfill_ids,
            event_store=self.events,
            current_state_store=self.current_state,
        )


    async def persist(self, *events: Event, backfilled: bool = False, **ctx: Any) -> dict[str, int]:
        """Persist events with an empty context; returns their new stream orderings."""
        from matrixd.storage.models import EventContext

        result = await self.writer.persist_events(
            [(ev, EventContext(**ctx)) for ev in events], backfilled=backfilled
        )
        return dict(result.stream_orderings)
