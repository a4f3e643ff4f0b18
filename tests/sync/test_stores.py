"""Store queries the sync area added: batched timelines, replaced state, filters, presence rows."""

from __future__ import annotations

from matrixd.storage.filters import FilterStore
from matrixd.storage.presence import UserPresenceState
from tests.sync.helpers import SyncTestCase


class TimelineRowsTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, _ = self.user("alice")
        self.rooms = [self.create_room(self.alice) for _ in range(3)]
        self.events = self.core.stores.events
        self.sent = {r: [self.send(self.alice, r, f"{r} {i}") for i in range(4)] for r in self.rooms}

    def test_dense_and_per_room_paths_agree(self) -> None:
        """The single range query and the per-room probes return the same newest-first rows."""
        top = self.hs.run(self.events.get_max_stream_ordering())
        low = top - 8
        dense = self.hs.run(self.events.get_recent_timeline_rows({r: (low, top) for r in self.rooms}, 3))
        per_room = self.hs.run(self.events.get_recent_timeline_rows(
            {r: (low, top) for r in self.rooms[:-1]} | {self.rooms[-1]: (None, top)}, 3))
        for r in self.rooms[:-1]:
            self.assertEqual(dense.get(r), per_room.get(r))
        self.assertEqual([row.event_id for row in per_room[self.rooms[-1]]], list(reversed(self.sent[self.rooms[-1]]))[:3])
        for rows in dense.values():
            self.assertEqual(rows, sorted(rows, key=lambda r: -r.stream_ordering))
            self.assertTrue(all(low < r.stream_ordering <= top for r in rows))

    def test_per_room_upper_bounds(self) -> None:
        """Each room's own upper bound is honoured on both paths."""
        first_room = self.rooms[0]
        bound = self.hs.run(self.events.get_event(self.sent[first_room][1])).internal_metadata.stream_ordering
        top = self.hs.run(self.events.get_max_stream_ordering())
        for lower in (bound - 5, None):
            rows = self.hs.run(self.events.get_recent_timeline_rows({first_room: (lower, bound)}, 10))
            self.assertEqual(rows[first_room][0].event_id, self.sent[first_room][1])
        empty = self.hs.run(self.events.get_recent_timeline_rows({first_room: (top, top)}, 10))
        self.assertEqual(empty, {})

    def test_replaced_state_ids(self) -> None:
        """get_replaced_state_event_ids names the event each state event replaced."""
        room = self.rooms[0]
        first = self.send(self.alice, room, event_type="m.room.topic", content={"topic": "a"}, state_key="")
        second = self.send(self.alice, room, event_type="m.room.topic", content={"topic": "b"}, state_key="")
        found = self.hs.run(self.core.stores.current_state.get_replaced_state_event_ids([first, second, "$x"]))
        self.assertEqual(found, {first: None, second: first})


class SmallStoreTests(SyncTestCase):
    def test_filter_ids_per_user(self) -> None:
        """Filter ids count from 0 per user and read back exactly."""
        store = FilterStore(self.hs.components.db, self.hs.components.clock)
        self.assertEqual(self.hs.run(store.add_filter("@a:test", {"x": 1})), 0)
        self.assertEqual(self.hs.run(store.add_filter("@a:test", {"x": 2})), 1)
        self.assertEqual(self.hs.run(store.add_filter("@b:test", {"x": 2})), 0)
        self.assertEqual(self.hs.run(store.get_filter("@a:test", 1)), {"x": 2})
        self.assertIsNone(self.hs.run(store.get_filter("@b:test", 1)))

    def test_presence_rows(self) -> None:
        """Presence updates get increasing stream ids and page by position."""
        store = self.hs.components.sync.stores.presence
        start = store.get_current_token()
        stored = self.hs.run(store.update_presence([
            UserPresenceState("@a:test", "online", last_active_ts=5),
            UserPresenceState("@b:test", "unavailable", status_msg="brb"),
        ]))
        self.assertEqual([s.stream_id for s in stored], [start + 1, start + 2])
        rows = self.hs.run(store.get_updates(start, store.get_current_token(), 10))
        self.assertEqual([(r.user_id, r.state) for r in rows], [("@a:test", "online"), ("@b:test", "unavailable")])
        self.hs.run(store.update_presence([UserPresenceState("@a:test", "offline")]))
        rows = self.hs.run(store.get_updates(start, store.get_current_token(), 10))
        self.assertEqual([(r.user_id, r.state) for r in rows], [("@b:test", "unavailable"), ("@a:test", "offline")])
        self.assertEqual(self.hs.run(store.get_presence(["@b:test", "@c:test"]))["@b:test"].status_msg, "brb")
