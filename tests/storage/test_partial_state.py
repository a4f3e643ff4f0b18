"""Partial-state rooms: the mark with its servers, servers learnt later, clearing and the resync position."""

from __future__ import annotations

from matrixd.storage.partial_state import PartialStateRoom, PartialStateStore
from tests.storage.utils import StorageTestCase, make_event


class PartialStateStoreTestCase(StorageTestCase):
    async def setUp(self) -> None:
        await super().setUp()
        self.store = PartialStateStore(self.db, self.clock)

    async def test_mark_read_and_clear(self) -> None:
        """A mark keeps the join, the server joined through and servers_in_room; clearing removes it."""
        await self.store.mark_partial("!r:x", "$join", "a.example", ["b.example", "a.example"])
        self.assertEqual(await self.store.get("!r:x"),
                         PartialStateRoom("!r:x", "$join", "a.example", ("a.example", "b.example")))
        self.assertTrue(await self.store.is_partial("!r:x"))
        self.assertEqual(await self.store.partial_among(["!r:x", "!other:x"]), {"!r:x"})
        self.assertEqual([r.room_id for r in await self.store.get_all()], ["!r:x"])
        await self.store.clear("!r:x", resynced_at=42)
        self.assertIsNone(await self.store.get("!r:x"))
        self.assertIsNone(await self.store.get_servers("!r:x"))
        self.assertEqual(await self.store.resynced_after(["!r:x"], 41), {"!r:x"})
        self.assertEqual(await self.store.resynced_after(["!r:x"], 42), set())

    async def test_partial_and_resynced_for_sync(self) -> None:
        """One call answers both of a sync's questions, from the database or from memory alike."""
        for in_memory in (False, True):
            store = PartialStateStore(self.db, self.clock)
            if in_memory:
                await store.track_in_memory()
            rooms = [f"!a{in_memory}:x", f"!b{in_memory}:x", f"!c{in_memory}:x"]
            await store.mark_partial(rooms[0], "$j", "a.example", [])
            await store.mark_partial(rooms[1], "$j", "a.example", [])
            await store.clear(rooms[1], resynced_at=50)
            self.assertEqual(await store.partial_and_resynced(rooms, 49, 60), ({rooms[0]}, {rooms[1]}))
            self.assertEqual(await store.partial_and_resynced(rooms, 50, 60), ({rooms[0]}, set()))
            self.assertEqual(await store.partial_and_resynced(rooms, None, 60), ({rooms[0]}, set()))
            # A sync computed before the resync's position still sees the room partial.
            self.assertEqual(await store.partial_and_resynced(rooms, 40, 49), ({rooms[0], rooms[1]}, set()))
            self.assertEqual(await store.partial_and_resynced(rooms, None, 49), ({rooms[0], rooms[1]}, set()))
            self.assertEqual(await store.partial_and_resynced([], 1, 2), (set(), set()))

    async def test_servers_learnt_only_while_partial(self) -> None:
        """Servers are added (once) while the room is partial, and ignored for other rooms."""
        await self.store.mark_partial("!r:x", "$join", "a.example", [])
        await self.store.add_servers("!r:x", ["c.example", "a.example"])
        await self.store.add_servers("!r:x", ["c.example"])
        await self.store.add_servers("!unmarked:x", ["d.example"])
        self.assertEqual(await self.store.get_servers("!r:x"), ["a.example", "c.example"])
        self.assertIsNone(await self.store.get_servers("!unmarked:x"))

    async def test_mark_again_replaces(self) -> None:
        """A new partial join of the same room replaces the old mark and its servers."""
        await self.store.mark_partial("!r:x", "$old", "a.example", ["b.example"])
        await self.store.mark_partial("!r:x", "$new", "c.example", [])
        self.assertEqual(await self.store.get("!r:x"), PartialStateRoom("!r:x", "$new", "c.example", ("c.example",)))

    async def test_events_after_and_late_rejection(self) -> None:
        """Timeline events after a position (rejected included), and marking an accepted one rejected."""
        room = "!room:test.local"
        a = make_event("$a", room)
        b = make_event("$b", room, prev=["$a"], depth=2)
        c = make_event("$c", room, prev=["$b"], depth=3, rejected_reason="auth")
        orderings = await self.persist(a, b, c)
        self.assertEqual(await self.events.get_room_event_ids_after(room, orderings["$a"], 10), ["$b", "$c"])
        await self.events.mark_rejected("$b", "not allowed")
        stored = await self.events.get_event("$b")
        assert stored is not None
        self.assertEqual(stored.internal_metadata.rejected_reason, "not allowed")
