"""Storing a batch of fetched events as outliers (``FederationEventHandler.store_outliers``).

Large batches are written in chunks while later events are checked, and a caller may have each event
verified only when first needed (``resolve``); the verdicts must be those of one batch checked whole.
"""

from __future__ import annotations

from typing import Optional

from matrixd.events.event import Event
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
from matrixd.federation.inbound import events as inbound_events
from tests.federation.utils import REMOTE
from tests.federation_flow.fake_room import FakeRoom
from tests.federation_flow.remote_room_case import CAROL, RemoteRoomTestCase


class OutlierBatchTestCase(RemoteRoomTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.handler = self.hs.components.federation_flow.event_handler
        self.patch(inbound_events, "OUTLIER_CHUNK", 4)

    def room_events(self, version: str) -> tuple[FakeRoom, list[Event]]:
        room = FakeRoom(self.remote, KNOWN_ROOM_VERSIONS[version], CAROL)
        for i in range(9):
            user = f"@m{i}:{REMOTE}"
            room.add("m.room.member", user, {"membership": "join"}, user)
        room.add("m.room.topic", CAROL, {"topic": "t"}, "")
        return room, list(room.events.values())

    def verdicts(self, room: FakeRoom, ids: list[str]) -> dict[str, Optional[str]]:
        stored = self.hs.run(self.st.events.get_events(ids))
        return {i: (stored[i].internal_metadata.rejected_reason if i in stored else "absent") for i in ids}

    def test_chunked_batch_stores_everything(self) -> None:
        """More events than a chunk: all stored as outliers, none rejected, in the order checked."""
        for version in ("10", "12"):
            room, events = self.room_events(version)
            stored = self.hs.run(self.handler.store_outliers(room.room_id, list(reversed(events))))
            self.assertEqual([e.event_id for e in stored], [e.event_id for e in events])  # oldest first
            got = self.hs.run(self.st.events.get_events([e.event_id for e in events]))
            self.assertEqual(len(got), len(events))
            self.assertTrue(all(e.internal_metadata.outlier and not e.rejected for e in got.values()))

    def test_event_dropped_by_resolve_is_as_if_absent(self) -> None:
        """An event ``resolve`` drops is not stored, and events citing it get the verdicts they get without it."""
        room_a, events_a = self.room_events("10")
        room_b, events_b = self.room_events("10")
        pl_a = room_a.state[("m.room.power_levels", "")]
        pl_b = room_b.state[("m.room.power_levels", "")]
        resolved: list[str] = []

        async def resolve(ev: Event) -> Optional[Event]:
            resolved.append(ev.event_id)
            return None if ev.event_id == pl_a else ev

        self.hs.run(self.handler.store_outliers(room_a.room_id, events_a, known={e.event_id: e for e in events_a},
                                                resolve=resolve))
        self.hs.run(self.handler.store_outliers(room_b.room_id, [e for e in events_b if e.event_id != pl_b]))
        self.assertEqual(len(resolved), len(set(resolved)))  # each resolved once
        verdicts_a = list(self.verdicts(room_a, [e.event_id for e in events_a]).values())
        verdicts_b = list(self.verdicts(room_b, [e.event_id for e in events_b]).values())
        self.assertEqual(verdicts_a[2], "absent")  # the power levels
        self.assertTrue(any(v is not None and v.startswith("missing auth events") for v in verdicts_a))
        self.assertEqual([v is None for v in verdicts_a], [v is None for v in verdicts_b])
        self.assertEqual([(v or "")[:19] for v in verdicts_a], [(v or "")[:19] for v in verdicts_b])
