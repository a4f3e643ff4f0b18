"""Group commit of message events, and the writer's in-memory copies of what it wrote.

Messages queued for a room while its lock is held are built one on another,
each auth-checked, and persisted in one transaction; the writer's remembered
stream rows, timeline rows and extremities must say exactly what the database says.
"""

from typing import Any, Coroutine, TypeVar

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.api.errors import AuthError
from matrixd.events.redaction import prune_event_dict
from matrixd.handlers.events.creation import EventSpec
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.database import Database
from matrixd.storage.events import EventStore
from matrixd.testing.room_core import make_room_core, requester
from matrixd.util.clock import Clock

T = TypeVar("T")
ALICE, BOB, CAROL = "@alice:test", "@bob:test", "@carol:test"


class GroupCommitTests(unittest.TestCase):
    def setUp(self) -> None:
        self.core, self.reactor = make_room_core(self)
        self.room = self.run_(self.core.room_creation.create_room(requester(ALICE), {"preset": "public_chat"}))
        self.run_(self.core.membership.update_membership(requester(BOB), BOB, self.room, "join"))
        self.txns: list[str] = []
        original = Database.run_interaction

        def counting(db: Database, desc: str, *args: Any, **kwargs: Any) -> Any:
            self.txns.append(desc)
            return original(db, desc, *args, **kwargs)

        self.patch(Database, "run_interaction", counting)

    def run_(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.successResultOf(defer.ensureDeferred(coro))

    def _hold_lock(self) -> Any:
        ctx = self.core.creation.room_lock.queue(self.room)
        self.successResultOf(defer.ensureDeferred(ctx.__aenter__()))
        return ctx

    def _release(self, ctx: Any) -> None:
        self.successResultOf(defer.ensureDeferred(ctx.__aexit__(None, None, None)))

    def _send(self, sender: str, body: str) -> "defer.Deferred[Any]":
        spec = EventSpec("m.room.message", sender, {"msgtype": "m.text", "body": body})
        return defer.ensureDeferred(self.core.creation.send(self.room, spec))

    def test_queued_messages_share_one_transaction_and_chain(self) -> None:
        """Messages queued behind the lock are one persist, each built on the previous one;
        one that fails auth gets its own error and the others are persisted."""
        ctx = self._hold_lock()
        ds = [self._send(ALICE, "a1"), self._send(BOB, "b1"), self._send(CAROL, "intruder"),
              self._send(ALICE, "a2")]
        self.assertFalse(any(d.called for d in ds))
        self.txns.clear()
        self._release(ctx)
        results = [self.successResultOf(d) for d in (ds[0], ds[1], ds[3])]
        self.assertIsInstance(self.failureResultOf(ds[2], AuthError).value, AuthError)
        self.assertEqual(self.txns.count("persist_events"), 1)

        events = [r.event for r in results]
        self.assertEqual([e.content["body"] for e in events], ["a1", "b1", "a2"])
        self.assertEqual(events[1].prev_event_ids(), [events[0].event_id])
        self.assertEqual(events[2].prev_event_ids(), [events[1].event_id])
        self.assertEqual([e.depth for e in events], [events[0].depth, events[0].depth + 1, events[0].depth + 2])
        orderings = [r.stream_ordering for r in results]
        self.assertEqual(orderings, sorted(orderings))
        # Forward extremities: the last one only, in memory and in the database.
        self.assertEqual(self.run_(self.core.stores.events.get_latest_event_ids_in_room(self.room)),
                         [events[2].event_id])
        rows = self.run_(self.core.db.execute(
            "t", "SELECT event_id FROM event_forward_extremities WHERE room_id = ?", self.room))
        self.assertEqual([r[0] for r in rows], [events[2].event_id])
        # Nobody's message was lost or duplicated.
        stored = self.run_(self.core.db.execute(
            "t", "SELECT COUNT(*) FROM events WHERE room_id = ? AND type = 'm.room.message'", self.room))
        self.assertEqual(stored[0][0], 3)

    def test_sequential_sends_need_no_lookups(self) -> None:
        """A message after our own last event reads no state, extremities or rows again."""
        self.successResultOf(self._send(ALICE, "warm"))
        self.txns.clear()
        for i in range(3):
            self.successResultOf(self._send(ALICE, f"m{i}"))
        self.assertEqual(self.txns, ["persist_events"] * 3)

    def test_state_event_between_messages(self) -> None:
        """A state event sent while messages queue is ordered by the lock and the next
        messages are built on the state after it (a ban stops the banned sender)."""
        ctx = self._hold_lock()
        before = self._send(BOB, "before")
        ban = defer.ensureDeferred(self.core.membership.update_membership(requester(ALICE), BOB, self.room, "ban"))
        self._release(ctx)
        self.successResultOf(before)
        self.successResultOf(ban)
        self.failureResultOf(self._send(BOB, "after"), AuthError)

    def test_remembered_rows_match_the_database(self) -> None:
        """Events-stream rows, current-state delta rows and incremental timeline rows served
        from the writer's memory equal a fresh store's reads of the database."""
        stores = self.core.stores
        start = stores.stream_ids.get_current_token()
        ctx = self._hold_lock()
        ds = [self._send(ALICE if i % 2 else BOB, f"x{i}") for i in range(5)]
        self._release(ctx)
        for d in ds:
            self.successResultOf(d)
        self.run_(self.core.membership.update_membership(requester(CAROL), CAROL, self.room, "join"))
        self.successResultOf(self._send(CAROL, "hello"))
        end = stores.stream_ids.get_current_token()

        fresh_events = EventStore(self.core.db, Clock(self.reactor),
                                  prune_event_dict=lambda d, rv: prune_event_dict(rv, d))
        fresh_current = CurrentStateStore(self.core.db, Clock(self.reactor), fresh_events)
        self.txns.clear()
        mem_rows = self.run_(stores.events.get_event_stream_rows(start, end, 100))
        mem_deltas = self.run_(stores.current_state.get_current_state_deltas(start, end, 100))
        bounds = {self.room: (start, end)}
        mem_timeline = self.run_(stores.events.get_recent_timeline_rows(bounds, 4))
        self.assertEqual(self.txns, [], "served from memory")
        self.assertEqual(mem_rows, self.run_(fresh_events.get_event_stream_rows(start, end, 100)))
        self.assertEqual(mem_deltas, self.run_(fresh_current.get_current_state_deltas(start, end, 100)))
        self.assertTrue(mem_deltas)
        self.assertEqual(mem_timeline, self.run_(fresh_events.get_recent_timeline_rows(bounds, 4)))
        self.assertEqual(len(mem_timeline[self.room]), 4)
        # Limits cut the same way.
        self.assertEqual(self.run_(stores.events.get_event_stream_rows(start, end, 2)),
                         self.run_(fresh_events.get_event_stream_rows(start, end, 2)))

    def test_redaction_after_caching_is_seen(self) -> None:
        """An event cached by the writer is re-read once a redaction of it is persisted."""
        target = self.successResultOf(self._send(BOB, "oops")).event
        self.run_(self.core.send.send_event(requester(BOB), self.room, "m.room.redaction", {}, redacts=target.event_id))
        seen = self.run_(self.core.stores.events.get_event(target.event_id))
        assert seen is not None
        self.assertNotIn("body", seen.content)
        self.assertIn("redacted_by", seen.get("unsigned", {}))
