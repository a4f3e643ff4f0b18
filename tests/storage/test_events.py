"""Persisting and reading events: round trips, pagination, extremities, auth chains, redactions."""

from __future__ import annotations

from matrixd.events.event import Event
from matrixd.storage.models import EventContext
from tests.storage.utils import V1, StorageTestCase, make_event

ROOM = "!room:test.local"
OTHER = "!other:test.local"


def _ids(events: list[Event]) -> list[str]:
    return [e.event_id for e in events]


class EventRoundTripTestCase(StorageTestCase):
    async def test_persist_and_get(self) -> None:
        """A persisted event reads back with the same PDU and its stream ordering set."""
        ev = make_event("$a", content={"body": "héllo \u0000 \ud83d", "n": 2**53 - 1, "f": [1, {"x": None}]})
        orderings = await self.persist(ev)
        self.assertEqual(ev.internal_metadata.stream_ordering, orderings["$a"])

        self.events._cache.clear()
        got = await self.events.get_event("$a")
        assert got is not None
        self.assertEqual(got.get_pdu_json(), ev.get_pdu_json())
        self.assertEqual(got.event_id, "$a")
        self.assertEqual(got.room_version, ev.room_version)
        self.assertEqual(got.internal_metadata.stream_ordering, orderings["$a"])
        self.assertFalse(got.internal_metadata.outlier)
        self.assertIsNone(await self.events.get_event("$missing"))
        self.assertEqual(set(await self.events.get_events(["$a", "$missing", "$a"])), {"$a"})
        self.assertEqual(await self.events.have_seen_events(["$a", "$missing"]), {"$a"})

    async def test_cached_events_are_compact_and_whole(self) -> None:
        """Events read from the database and those the writer caches keep their hashes
        and signatures serialised, and still give back the whole PDU."""
        ev = make_event("$a")
        ev.get_pdu_json()["signatures"] = {"test.local": {"ed25519:k": "c2ln"}}
        await self.persist(ev)
        for source in ("writer", "database"):
            if source == "database":
                self.events._cache.clear()
            got = await self.events.get_event("$a")
            assert got is not None
            self.assertNotIn("signatures", got.get_fields_without_signing(), source)
            self.assertNotIn("hashes", got.get_fields_without_signing(), source)
            self.assertEqual(got.get_pdu_json(), ev.get_pdu_json(), source)
            self.assertEqual(got.signatures, {"test.local": {"ed25519:k": "c2ln"}})
            self.assertEqual(got.hashes, {"sha256": "x"})
            self.assertTrue(got.has("hashes"))
            self.assertEqual(got.get("signatures"), ev.get("signatures"))

    async def test_state_keys_without_loading_events(self) -> None:
        """get_state_keys gives room, type, state key and rejection of stored events (None for a
        message), and the outliers the writer stored are not put in the event cache."""
        await self.persist(
            make_event("$m", type="m.room.member", state_key="@bob:test.local", content={"membership": "join"},
                       outlier=True),
            make_event("$r", type="m.room.topic", state_key="", outlier=True, rejected_reason="auth_error"),
            make_event("$t", room_id=OTHER, type="m.room.name", state_key="", depth=2),
            make_event("$msg", depth=3),
        )
        self.assertEqual(await self.events.get_state_keys(["$m", "$r", "$t", "$msg", "$missing"]), {
            "$m": (ROOM, "m.room.member", "@bob:test.local", False),
            "$r": (ROOM, "m.room.topic", "", True),
            "$t": (OTHER, "m.room.name", "", False),
            "$msg": (ROOM, "m.room.message", None, False),
        })
        self.assertIsNone(self.events._cache.get("$m"))
        self.assertIsNotNone(self.events._cache.get("$t"))

    async def test_stream_position_covers_persisted_events(self) -> None:
        """After persist_events returns, the events stream token covers the batch."""
        result = await self.writer.persist_events(
            [(make_event(f"$e{i}", depth=i), EventContext()) for i in range(1, 4)]
        )
        self.assertEqual(result.max_stream_ordering, 3)
        self.assertEqual(self.stream_ids.get_current_token(), 3)
        self.assertEqual(await self.events.get_max_stream_ordering(), 3)
        rows = await self.events.get_event_stream_rows(1, 3, 10)
        self.assertEqual([(r.stream_ordering, r.event_id) for r in rows], [(2, "$e2"), (3, "$e3")])

    async def test_outliers_rows_are_read_from_the_database(self) -> None:
        """The writer keeps recent events-stream rows in memory, but not outliers' (a remote join
        stores thousands): a range holding one is read from the database, with every row."""
        await self.persist(make_event("$a", depth=1))
        await self.persist(make_event("$o1", outlier=True), make_event("$o2", outlier=True))
        await self.persist(make_event("$b", depth=2))
        recent = self.events._recent_rows
        assert recent is not None
        self.assertEqual([r.event_id for _, rows in recent.get(0, 1) or [] for r in rows], ["$a"])
        self.assertIsNone(recent.get(0, 4))  # the outliers' ids were not recorded
        self.assertEqual([r.event_id for _, rows in recent.get(3, 4) or [] for r in rows], ["$b"])
        rows = await self.events.get_event_stream_rows(0, 4, 10)
        self.assertEqual([(r.event_id, r.outlier) for r in rows],
                         [("$a", False), ("$o1", True), ("$o2", True), ("$b", False)])

    async def test_duplicates_are_skipped(self) -> None:
        """Persisting an event again (or twice in a batch) writes nothing new."""
        first = await self.persist(make_event("$a"), make_event("$a"))
        self.assertEqual(list(first), ["$a"])
        again = await self.persist(make_event("$a"))
        self.assertEqual(again, {})
        rows = await self.db.execute("c", "SELECT COUNT(*) FROM events")
        self.assertEqual(rows, [(1,)])

    async def test_rejected_and_outlier_flags_round_trip(self) -> None:
        """Outlier and rejected flags are stored and read back; soft_failed lives in metadata."""
        await self.persist(
            make_event("$o", outlier=True),
            make_event("$r", rejected_reason="auth_error"),
            make_event("$s", soft_failed=True),
        )
        self.events._cache.clear()
        got = await self.events.get_events(["$o", "$r", "$s"])
        self.assertTrue(got["$o"].internal_metadata.outlier)
        self.assertEqual(got["$r"].internal_metadata.rejected_reason, "auth_error")
        self.assertTrue(got["$r"].rejected)
        self.assertTrue(got["$s"].internal_metadata.soft_failed)


class PaginationTestCase(StorageTestCase):
    async def setUp(self) -> None:
        await super().setUp()
        # Room events arrive interleaved with another room's, plus an outlier and a rejected event.
        evs = [
            make_event("$1", depth=1),
            make_event("$x1", room_id=OTHER, depth=1),
            make_event("$2", depth=2, prev=["$1"]),
            make_event("$out", depth=2, outlier=True),
            make_event("$rej", depth=2, rejected_reason="bad"),
            make_event("$soft", depth=2, soft_failed=True),
            make_event("$3", depth=3, prev=["$2"]),
            make_event("$4", depth=4, prev=["$3"]),
        ]
        for ev in evs:
            await self.persist(ev)
        self.so = {ev.event_id: ev.internal_metadata.stream_ordering for ev in evs}

    async def test_stream_forward_and_backward(self) -> None:
        """Stream pagination returns the room's timeline within (lower, upper] in either direction."""
        fwd = await self.events.get_room_events_stream(ROOM, 0, None, 10, "f")
        self.assertEqual(_ids(fwd), ["$1", "$2", "$3", "$4"])
        back = await self.events.get_room_events_stream(ROOM, None, None, 2, "b")
        self.assertEqual(_ids(back), ["$4", "$3"])
        since = await self.events.get_room_events_stream(ROOM, self.so["$2"], self.so["$4"], 10, "f")
        self.assertEqual(_ids(since), ["$3", "$4"])
        older = await self.events.get_room_events_stream(ROOM, self.so["$3"], self.so["$1"], 10, "b")
        self.assertEqual(_ids(older), ["$3", "$2"])

    async def test_topological_pagination(self) -> None:
        """DAG-order pagination uses (depth, stream) keys, "just after the event" semantics."""
        # A late-arriving event deep in the past sorts by depth, not arrival.
        await self.persist(make_event("$late", depth=2, prev=["$1"]))
        pos4 = await self.events.get_topological_position("$4")
        assert pos4 is not None
        back = await self.events.get_room_events_topological(ROOM, pos4, None, 10, "b")
        self.assertEqual(_ids(back), ["$4", "$3", "$late", "$2", "$1"])
        pos2 = await self.events.get_topological_position("$2")
        fwd = await self.events.get_room_events_topological(ROOM, pos2, pos4, 2, "f")
        self.assertEqual(_ids(fwd), ["$late", "$3"])
        everything = await self.events.get_room_events_topological(ROOM, None, None, 10, "f")
        self.assertEqual(_ids(everything), ["$1", "$2", "$late", "$3", "$4"])

    async def test_topological_position_at_stream(self) -> None:
        """A stream position maps to the largest DAG key at or before it in the room."""
        pos = await self.events.get_topological_position_at_stream(ROOM, self.so["$3"])
        self.assertEqual(pos, (3, self.so["$3"]))
        self.assertIsNone(await self.events.get_topological_position_at_stream(ROOM, 0))


class ExtremitiesTestCase(StorageTestCase):
    async def test_linear_fork_and_merge(self) -> None:
        """Forward extremities follow the DAG's leaves through a fork and a merge."""
        await self.persist(make_event("$a"))
        self.assertEqual(await self.events.get_latest_event_ids_in_room(ROOM), ["$a"])
        await self.persist(make_event("$b", prev=["$a"], depth=2))
        await self.persist(make_event("$c", prev=["$a"], depth=2))
        self.assertEqual(await self.events.get_latest_event_ids_in_room(ROOM), ["$b", "$c"])
        await self.persist(make_event("$d", prev=["$b", "$c"], depth=3))
        self.assertEqual(await self.events.get_latest_event_ids_in_room(ROOM), ["$d"])

    async def test_out_of_order_arrival(self) -> None:
        """An event arriving after its child is not a leaf; the missing parent was a backward extremity."""
        await self.persist(make_event("$a"))
        await self.persist(make_event("$c", prev=["$b"], depth=3))
        self.assertEqual(await self.events.get_latest_event_ids_in_room(ROOM), ["$a", "$c"])
        self.assertEqual(await self.events.get_backward_extremities(ROOM), ["$b"])
        await self.persist(make_event("$b", prev=["$a"], depth=2))
        self.assertEqual(await self.events.get_latest_event_ids_in_room(ROOM), ["$c"])
        self.assertEqual(await self.events.get_backward_extremities(ROOM), [])

    async def test_outliers_rejected_and_soft_failed_are_not_leaves(self) -> None:
        """Only accepted timeline events become forward extremities."""
        await self.persist(make_event("$a"))
        await self.persist(
            make_event("$o", prev=["$a"], outlier=True),
            make_event("$r", prev=["$a"], rejected_reason="bad"),
            make_event("$s", prev=["$a"], soft_failed=True),
        )
        self.assertEqual(await self.events.get_latest_event_ids_in_room(ROOM), ["$a"])

    async def test_outlier_promoted_to_timeline(self) -> None:
        """An outlier persisted again as a timeline event joins the stream at a new position."""
        await self.persist(make_event("$a"))
        await self.persist(make_event("$b", prev=["$a"], depth=2, outlier=True))
        self.assertEqual(_ids(await self.events.get_room_events_stream(ROOM, 0, None, 10, "f")), ["$a"])
        cached = await self.events.get_event("$b")
        assert cached is not None and cached.internal_metadata.outlier

        orderings = await self.persist(make_event("$b", prev=["$a"], depth=2))
        self.assertEqual(list(orderings), ["$b"])
        self.assertEqual(_ids(await self.events.get_room_events_stream(ROOM, 0, None, 10, "f")), ["$a", "$b"])
        self.assertEqual(await self.events.get_latest_event_ids_in_room(ROOM), ["$b"])
        got = await self.events.get_event("$b")
        assert got is not None
        self.assertFalse(got.internal_metadata.outlier)
        self.assertEqual(got.internal_metadata.stream_ordering, orderings["$b"])

    async def test_backfill_uses_negative_stream(self) -> None:
        """Backfilled events get negative orderings, stay out of sync ranges, and keep extremities."""
        await self.persist(make_event("$now", prev=["$old2"], depth=10))
        result = await self.writer.persist_events(
            [
                (make_event("$old1", depth=8), EventContext()),
                (make_event("$old2", prev=["$old1"], depth=9), EventContext()),
            ],
            backfilled=True,
        )
        self.assertEqual(dict(result.stream_orderings), {"$old1": -1, "$old2": -2})
        self.assertEqual(self.backfill_ids.get_current_token(), -2)
        rows = await self.events.get_backfill_stream_rows(0, -2, 10)
        self.assertEqual([(r.stream_ordering, r.event_id) for r in rows], [(-1, "$old1"), (-2, "$old2")])
        self.assertEqual([r.event_id for r in await self.events.get_backfill_stream_rows(-1, -5, 10)], ["$old2"])
        self.assertEqual([r.event_id for r in await self.events.get_event_stream_rows(-5, 5, 10)], ["$now"])
        self.assertEqual(_ids(await self.events.get_room_events_stream(ROOM, 0, None, 10, "f")), ["$now"])
        history = await self.events.get_room_events_topological(ROOM, None, None, 10, "b")
        self.assertEqual(_ids(history), ["$now", "$old2", "$old1"])
        self.assertEqual(await self.events.get_latest_event_ids_in_room(ROOM), ["$now"])
        self.assertEqual(await self.events.get_backward_extremities(ROOM), [])


class AuthChainTestCase(StorageTestCase):
    async def test_auth_chain_and_difference(self) -> None:
        """Auth chains are the transitive closure of auth_events; the difference is union minus intersection."""
        await self.persist(
            make_event("$create", type="m.room.create", state_key=""),
            make_event("$join", type="m.room.member", state_key="@alice:test.local", auth=["$create"]),
            make_event("$pl", type="m.room.power_levels", state_key="", auth=["$create", "$join"]),
            make_event("$jr", type="m.room.join_rules", state_key="", auth=["$create", "$join", "$pl"]),
            make_event("$bob", type="m.room.member", state_key="@bob:test.local",
                       auth=["$create", "$jr", "$pl"]),
            make_event("$pl2", type="m.room.power_levels", state_key="", auth=["$create", "$join"]),
        )
        self.assertEqual(await self.events.get_auth_chain_ids(["$bob"]), {"$create", "$join", "$pl", "$jr"})
        self.assertEqual(await self.events.get_auth_chain_ids(["$join"], include_given=True), {"$join", "$create"})
        self.assertEqual(await self.events.get_auth_chain_ids([]), set())
        diff = await self.events.get_auth_chain_difference([{"$bob"}, {"$pl2"}])
        self.assertEqual(diff, {"$pl", "$jr"})


class RedactionTestCase(StorageTestCase):
    async def test_redaction_replaces_cached_event(self) -> None:
        """Once a redaction is stored, readers get the pruned event with unsigned.redacted_by."""
        await self.persist(make_event("$msg", content={"body": "secret"}))
        before = await self.events.get_event("$msg")
        assert before is not None
        self.assertEqual(before.content, {"body": "secret"})

        await self.persist(make_event("$red", type="m.room.redaction", redacts="$msg", content={}))
        after = await self.events.get_event("$msg")
        assert after is not None
        self.assertEqual(after.content, {})
        self.assertEqual(after.unsigned["redacted_by"], "$red")
        self.events._cache.clear()
        reread = await self.events.get_event("$msg")
        assert reread is not None
        self.assertEqual((reread.content, reread.unsigned["redacted_by"]), ({}, "$red"))

    async def test_redaction_before_target(self) -> None:
        """A redaction that arrives first applies when its target is stored."""
        await self.persist(make_event("$red", type="m.room.redaction", redacts="$msg", content={}))
        await self.persist(make_event("$msg", content={"body": "secret"}))
        got = await self.events.get_event("$msg")
        assert got is not None
        self.assertEqual(got.content, {})

    async def test_cross_server_redaction_needs_power(self) -> None:
        """From room v3, another server's redaction applies only if marked authorised."""
        await self.persist(make_event("$m1", content={"body": "a"}), make_event("$m2", content={"body": "b"}))
        await self.persist(
            make_event("$r1", type="m.room.redaction", redacts="$m1", sender="@eve:evil.example", content={})
        )
        await self.persist(
            make_event("$r2", type="m.room.redaction", redacts="$m2", sender="@mod:other.example", content={}),
            redaction_authorised=True,
        )
        got = await self.events.get_events(["$m1", "$m2"])
        self.assertEqual(got["$m1"].content, {"body": "a"})
        self.assertEqual(got["$m2"].content, {})

    async def test_rejected_or_other_room_redactions_do_not_apply(self) -> None:
        """A rejected redaction, or one from another room, leaves the event intact."""
        await self.persist(make_event("$m", content={"body": "a"}))
        await self.persist(
            make_event("$r1", type="m.room.redaction", redacts="$m", content={}, rejected_reason="auth"),
            make_event("$r2", type="m.room.redaction", redacts="$m", content={}, room_id=OTHER),
        )
        got = await self.events.get_event("$m")
        assert got is not None
        self.assertEqual(got.content, {"body": "a"})

    async def test_room_v1_redactions_passed_auth(self) -> None:
        """In v1/v2 rooms the auth rules already checked the redaction: it always applies."""
        await self.persist(make_event("$m:test.local", room_version=V1, content={"body": "a"}))
        await self.persist(
            make_event("$r:evil.example", type="m.room.redaction", redacts="$m:test.local",
                       sender="@eve:evil.example", room_version=V1, content={})
        )
        got = await self.events.get_event("$m:test.local")
        assert got is not None
        self.assertEqual(got.content, {})
        self.assertEqual(got.prev_event_ids(), [])
