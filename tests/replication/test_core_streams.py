"""The core streams end to end: events persisted by the room core reach a worker with its own database connection."""

from __future__ import annotations

from typing import Any, Coroutine, TypeVar

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.events.redaction import prune_event_dict
from matrixd.replication import metrics
from matrixd.replication.caches import CachesPruner, UnknownCacheError
from matrixd.storage.cache_invalidation import CacheInvalidationStore
from matrixd.replication.roles import (
    MasterReplication,
    WorkerReplication,
    build_master_replication,
    build_worker_replication,
)
from matrixd.storage.accounts import UserStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.database import Database
from matrixd.storage.events import EventStore
from matrixd.storage.models import EventContext
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName
from matrixd.testing.homeserver import make_homeserver
from matrixd.testing.room_core import make_room_core, requester
from tests.replication.harness import SECRET, FakeNetwork
from tests.replication.test_protocol import _sample
from tests.storage.utils import V1, make_event

T = TypeVar("T")
ALICE, BOB = "@alice:test", "@bob:test"
ALL_STREAMS = ["events", "backfill", "current_state_deltas", "caches"]


class _CoreReplicationCase(unittest.TestCase):
    """A room core with master replication, and a worker on its own connection to the same database."""

    def setUp(self) -> None:
        self.core, self.reactor = make_room_core(self)
        self.clock = self.core.clock
        self.network = FakeNetwork(self.reactor)
        self.master_users = UserStore(self.core.db, self.clock)
        self.master: MasterReplication = self.run_(build_master_replication(
            clock=self.clock, db=self.core.db, server_name="test", secret=SECRET, notifier=self.core.notifier,
            events=self.core.stores.events, current_state=self.core.stores.current_state,
            stream_ids=self.core.stores.stream_ids, backfill_ids=self.core.stores.backfill_ids,
            users=self.master_users, poll_interval=None,
        ))
        # As matrixd.app.master wires it: every persisted event makes the publisher look for new rows.
        self.core.persister.add_persisted_callback(
            lambda _ev: self.master.publisher.notify("events", "current_state_deltas")
        )
        self.network.server_factory = self.master.server

        # The worker: its own connection to the same database, its own stores, caches and notifier.
        self.worker_db = Database(self.core.db.config, self.reactor, inline=True)
        self.addCleanup(self.worker_db.close)
        self.w_events = EventStore(self.worker_db, self.clock, prune_event_dict=lambda pdu, rv: prune_event_dict(rv, pdu))
        self.w_state = CurrentStateStore(self.worker_db, self.clock, self.w_events)
        self.w_users = UserStore(self.worker_db, self.clock)
        self.w_notifier = Notifier(self.clock)
        self.worker: WorkerReplication = build_worker_replication(
            clock=self.clock, db=self.worker_db, connector=self.network.connect, server_name="test",
            worker_name="sync1", secret=SECRET, notifier=self.w_notifier, events=self.w_events,
            current_state=self.w_state, users=self.w_users, subscribe=ALL_STREAMS,
        )
        self.worker.client.start()
        self.addCleanup(self.worker.client.stop)
        self.network.pump()
        self.successResultOf(self.worker.client.ready)

    def run_(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.successResultOf(defer.ensureDeferred(coro))

    def disconnect(self) -> None:
        self.network.server_factory = None
        assert self.master.server is not None
        self.master.server.close_all()
        self.network.pump()
        self.assertFalse(self.worker.client.connected)

    def reconnect(self) -> None:
        self.network.server_factory = self.master.server
        for _ in range(40):
            self.reactor.advance(0.5)
            self.network.pump()
        self.assertTrue(self.worker.client.connected)


class CoreStreamsTests(_CoreReplicationCase):
    def test_events_from_core_arrive_as_rdata_and_wake_the_worker(self) -> None:
        """Events persisted through the core are sent as RDATA, advance the worker's notifier and wake its waiters."""
        rdata = _sample(metrics.COMMANDS_RECEIVED, {"verb": "RDATA"})
        room_id = self.run_(self.core.room_creation.create_room(requester(ALICE), {"preset": "public_chat"}))
        self.network.pump()
        head = self.core.stores.stream_ids.get_current_token()
        self.assertGreater(_sample(metrics.COMMANDS_RECEIVED, {"verb": "RDATA"}), rdata)
        self.assertEqual(self.worker.dispatcher.position("events"), head)
        self.assertEqual(self.w_notifier.current_token.events, head)
        self.assertEqual(self.master.dispatcher.position("events"), head)

        seq = self.w_notifier.current_seq()
        woken = self.w_notifier.wait_for_keys([room_id], seq, timeout=30)
        self.assertNoResult(woken)
        self.run_(self.core.send.send_event(requester(ALICE), room_id, "m.room.message", {"body": "hi"}))
        self.assertNoResult(woken)  # nothing is delivered until the network moves
        self.network.pump()
        self.assertTrue(self.successResultOf(woken))
        self.assertEqual(self.w_notifier.current_token.events, self.core.stores.stream_ids.get_current_token())
        self.successResultOf(self.w_notifier.wait_for_token(self.core.notifier.current_token, timeout=1))

    def test_positions_never_pass_an_unfinished_id(self) -> None:
        """While an earlier stream id is unfinished, later committed events are neither announced nor applied."""
        room_id = self.run_(self.core.room_creation.create_room(requester(ALICE), {}))
        self.network.pump()
        ids = self.core.stores.stream_ids
        pending = ids.get_next()
        held = pending.__enter__()  # a transaction that has its id but has not committed
        sent = defer.ensureDeferred(
            self.core.send.send_event(requester(ALICE), room_id, "m.room.message", {"body": "later"}))
        self.network.pump()
        self.assertEqual(self.worker.dispatcher.position("events"), held - 1)
        self.assertEqual(self.w_notifier.current_token.events, held - 1)
        self.assertNoResult(sent)  # the reply waits for the event's announcement, held up by the earlier id
        pending.__exit__(None, None, None)  # rolled back: the id carries no row
        self.master.publisher.notify("events")
        self.network.pump()
        self.successResultOf(sent)
        self.assertEqual(self.worker.dispatcher.position("events"), ids.get_current_token())
        self.assertEqual(self.w_notifier.current_token.events, ids.get_current_token())

    def test_state_changes_invalidate_the_worker_caches(self) -> None:
        """A worker that cached a room's state and members sees the change after the rows arrive."""
        room_id = self.run_(self.core.room_creation.create_room(requester(ALICE), {"preset": "public_chat"}))
        self.network.pump()
        self.assertEqual(self.run_(self.w_state.get_users_in_room(room_id)), [ALICE])
        self.assertNotIn(("m.room.topic", ""), self.run_(self.w_state.get_current_state_ids(room_id)))
        self.assertEqual(self.run_(self.w_state.get_rooms_for_user(BOB)), frozenset())

        self.run_(self.core.membership.update_membership(requester(BOB), BOB, room_id, "join"))
        self.run_(self.core.send.send_event(requester(ALICE), room_id, "m.room.topic", {"topic": "t"}, state_key=""))
        self.network.pump()
        self.assertEqual(self.run_(self.w_state.get_users_in_room(room_id)), [ALICE, BOB])
        self.assertIn(("m.room.topic", ""), self.run_(self.w_state.get_current_state_ids(room_id)))
        self.assertEqual(self.run_(self.w_state.get_rooms_for_user(BOB)), frozenset({room_id}))

    def test_redaction_invalidates_the_worker_event_cache(self) -> None:
        """The events row of a redaction names its target, so the worker's cached copy is replaced."""
        room_id = self.run_(self.core.room_creation.create_room(requester(ALICE), {}))
        event_id = self.run_(self.core.send.send_event(requester(ALICE), room_id, "m.room.message", {"body": "oops"}))
        self.network.pump()
        cached = self.run_(self.w_events.get_event(event_id))
        assert cached is not None
        self.assertEqual(cached.content, {"body": "oops"})
        self.run_(self.core.send.send_event(requester(ALICE), room_id, "m.room.redaction", {}, redacts=event_id))
        self.network.pump()
        redacted = self.run_(self.w_events.get_event(event_id))
        assert redacted is not None
        self.assertEqual(redacted.content, {})

    def test_gap_caught_up_from_the_database_and_token_ahead_waits(self) -> None:
        """A worker that missed events catches up from its own database connection; a token ahead waits for it."""
        room_id = self.run_(self.core.room_creation.create_room(requester(ALICE), {}))
        self.network.pump()
        self.disconnect()
        catchups = _sample(metrics.CATCHUPS, {"stream": "events"})
        rows = _sample(metrics.CATCHUP_ROWS, {"stream": "events"})
        sent = [self.run_(self.core.send.send_event(requester(ALICE), room_id, "m.room.message", {"body": str(i)}))
                for i in range(3)]
        master_token = self.core.notifier.current_token
        self.assertLess(self.w_notifier.current_token.events, master_token.events)
        waiting = self.w_notifier.wait_for_token(master_token, timeout=60)
        self.assertNoResult(waiting)

        self.reconnect()
        self.successResultOf(waiting)
        self.assertEqual(self.worker.dispatcher.position("events"), master_token.events)
        self.assertEqual(_sample(metrics.CATCHUPS, {"stream": "events"}), catchups + 1)
        self.assertEqual(_sample(metrics.CATCHUP_ROWS, {"stream": "events"}), rows + 3)
        self.assertEqual(
            [e.event_id for e in self.run_(self.w_events.get_room_events_stream(room_id, 0, None, 100, "f"))][-3:],
            sent,
        )

    def test_backfill_stream_counts_up_on_the_wire(self) -> None:
        """Backfilled events (negative orderings) travel on the backfill stream with positive tokens."""
        result = self.run_(self.core.stores.writer.persist_events(
            [(make_event("$old1", depth=8, room_version=V1), EventContext()),
             (make_event("$old2", prev=["$old1"], depth=9, room_version=V1), EventContext())],
            backfilled=True,
        ))
        self.assertEqual(dict(result.stream_orderings), {"$old1": -1, "$old2": -2})
        self.master.publisher.notify("backfill")
        self.network.pump()
        self.assertEqual(self.worker.dispatcher.position("backfill"), 2)
        page = self.run_(self.worker.registry.get("backfill").get_updates(0, 2, 10))
        self.assertEqual([(t, r.event_id) for t, r in page.rows], [(1, "$old1"), (2, "$old2")])
        self.assertFalse(page.limited)
        self.assertEqual(self.w_notifier.current_token.events, self.core.stores.stream_ids.get_current_token())

    def test_current_state_deltas_rows(self) -> None:
        """The deltas stream carries each current-state change at its events-stream position."""
        room_id = self.run_(self.core.room_creation.create_room(requester(ALICE), {}))
        self.network.pump()
        head = self.core.stores.stream_ids.get_current_token()
        self.assertEqual(self.worker.dispatcher.position("current_state_deltas"), head)
        page = self.run_(self.worker.registry.get("current_state_deltas").get_updates(0, head, 2))
        self.assertTrue(page.limited)
        self.assertEqual(len({t for t, _ in page.rows}), 2)
        self.assertEqual(page.rows[0][1].room_id, room_id)
        self.assertEqual((page.rows[0][1].type, page.rows[0][1].event_id is not None), ("m.room.create", True))


class CachesStreamTests(_CoreReplicationCase):
    def test_cache_invalidation_by_name_reaches_the_worker(self) -> None:
        """invalidator.invalidate('users', [id]) drops the worker's cached user; the name must exist."""
        self.run_(self.master_users.create_user("@carol:test", None))
        info = self.run_(self.w_users.get_user("@carol:test"))
        assert info is not None and not info.admin
        self.run_(self.master_users.set_admin("@carol:test", True))
        info = self.run_(self.w_users.get_user("@carol:test"))
        assert info is not None and not info.admin  # still the worker's cached copy

        self.run_(self.master.invalidator.invalidate("users", ["@carol:test"]))
        self.network.pump()
        info = self.run_(self.w_users.get_user("@carol:test"))
        assert info is not None
        self.assertTrue(info.admin)

        position = self.worker.dispatcher.position("caches")
        self.failureResultOf(
            defer.ensureDeferred(self.master.invalidator.invalidate("no_such_cache", ["x"])), UnknownCacheError
        )
        # Not clearable as a whole: only by key.
        self.failureResultOf(defer.ensureDeferred(self.master.invalidator.invalidate("events", None)), UnknownCacheError)
        self.network.pump()
        self.assertEqual(self.worker.dispatcher.position("caches"), position)

    def test_unknown_cache_name_from_the_stream_is_logged_and_ignored(self) -> None:
        """A caches row naming a cache this worker does not have is an error logged, not a silent no-op."""
        # The master knows a cache this worker does not (say, the worker runs an older version).
        self.master.caches.register("master_only", lambda keys: None)
        with self.assertLogs("matrixd.replication.caches", level="ERROR") as logs:
            stream_id = self.run_(self.master.invalidator.invalidate("master_only", ["k"]))
            self.network.pump()
        self.assertTrue(any("master_only" in line for line in logs.output), logs.output)
        self.assertEqual(self.worker.dispatcher.position("caches"), stream_id)

    def test_invalidations_missed_while_disconnected_are_replayed(self) -> None:
        """The caches stream is in the database: a reconnecting worker replays what it missed."""
        self.run_(self.master_users.create_user("@dave:test", None))
        self.run_(self.w_users.get_user("@dave:test"))
        self.disconnect()
        self.run_(self.master_users.set_admin("@dave:test", True))
        self.run_(self.master.invalidator.invalidate("users", ["@dave:test"]))
        info = self.run_(self.w_users.get_user("@dave:test"))
        assert info is not None and not info.admin
        self.reconnect()
        info = self.run_(self.w_users.get_user("@dave:test"))
        assert info is not None
        self.assertTrue(info.admin)

    def _pruner(self, retention_ms: int) -> CachesPruner:
        return CachesPruner(self.clock, CacheInvalidationStore(self.core.db, self.clock),
                            lambda: self.master.publisher.published_position("caches"), retention_ms=retention_ms)

    def test_pruning_keeps_recent_and_unpublished_rows(self) -> None:
        """Rows older than the retention and already published are deleted; newer ones stay and still replay."""
        store = CacheInvalidationStore(self.core.db, self.clock)
        first = self.run_(self.master.invalidator.invalidate("users", ["@a:test"]))
        self.network.pump()
        self.reactor.advance(120)
        second = self.run_(self.master.invalidator.invalidate("users", ["@b:test"]))
        self.network.pump()
        self.assertEqual(self.run_(self._pruner(retention_ms=60_000).prune_once()), 1)
        self.assertEqual(self.run_(store.get_pruned_up_to()), first)
        self.assertEqual([r.stream_id for r in self.run_(store.get_invalidations(0, second, 10))], [second])
        # Nothing newer than the retention goes, even when published.
        self.assertEqual(self.run_(self._pruner(retention_ms=60_000).prune_once()), 0)
        # A row not yet published is never pruned, however old.
        self.disconnect()
        with self.master.invalidator._id_gen.get_next() as held:
            self.run_(store.add_invalidation(held, "users", ["@c:test"]))
            self.reactor.advance(3600)
            self.assertEqual(self.run_(self._pruner(retention_ms=1).prune_once()), 1)  # `second` only
        self.assertEqual(self.run_(store.get_pruned_up_to()), second)
        self.assertEqual([r.stream_id for r in self.run_(store.get_invalidations(0, held, 10))], [held])

    def test_worker_behind_the_pruned_rows_clears_its_caches(self) -> None:
        """A worker that missed pruned invalidations cannot replay them: it clears its caches on catch-up."""
        self.run_(self.master_users.create_user("@erin:test", None))
        self.run_(self.w_users.get_user("@erin:test"))
        self.disconnect()
        self.run_(self.master_users.set_admin("@erin:test", True))
        self.run_(self.master.invalidator.invalidate("users", ["@erin:test"]))
        self.master.publisher.notify("caches")
        self.reactor.advance(7200)
        self.assertGreaterEqual(self.run_(self._pruner(retention_ms=3_600_000).prune_once()), 1)
        info = self.run_(self.w_users.get_user("@erin:test"))
        assert info is not None and not info.admin  # the stale copy
        with self.assertLogs("matrixd.replication.core_streams", level="WARNING"):
            self.reconnect()
        info = self.run_(self.w_users.get_user("@erin:test"))
        assert info is not None
        self.assertTrue(info.admin)


class MasterWiringTests(unittest.TestCase):
    def test_master_components_publish_persisted_events(self) -> None:
        """The master role's wiring hooks the publisher to the persister and serves workers with the secret."""
        hs = make_homeserver(self, {"worker_replication_secret": SECRET})
        replication = hs.components.replication
        assert replication.server is not None
        network = FakeNetwork(hs.reactor)
        network.server_factory = replication.server
        db = Database(hs.components.db.config, hs.reactor, inline=True)
        self.addCleanup(db.close)
        clock = hs.components.clock
        events = EventStore(db, clock, prune_event_dict=lambda pdu, rv: prune_event_dict(rv, pdu))
        notifier = Notifier(clock)
        worker = build_worker_replication(
            clock=clock, db=db, connector=network.connect, server_name=hs.server_name, worker_name="w",
            secret=SECRET, notifier=notifier, events=events, current_state=CurrentStateStore(db, clock, events),
            subscribe=["events"],
        )
        worker.client.start()
        self.addCleanup(worker.client.stop)
        network.pump()
        hs.run(hs.components.core.room_creation.create_room(requester("@alice:" + hs.server_name), {}))
        network.pump()
        head = hs.components.core.stores.stream_ids.get_current_token()
        self.assertGreater(head, 0)
        self.assertEqual(notifier.current_token.get(StreamName.EVENTS), head)

    def test_no_secret_no_server(self) -> None:
        """Without worker_replication_secret the master builds no replication server (nothing to listen with)."""
        hs = make_homeserver(self)
        self.assertIsNone(hs.components.replication.server)
