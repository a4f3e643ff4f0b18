"""Stream registry entries, the row codec, the cache-name registry, the dispatcher and the publisher in isolation."""

from __future__ import annotations

from typing import Any, Optional

import attrs
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from matrixd.replication.caches import CacheRegistry, UnknownCacheError
from matrixd.replication.commands import Command, PositionCommand, RdataCommand
from matrixd.replication.dispatcher import StreamDispatcher
from matrixd.replication.publisher import StreamPublisher
from matrixd.replication.streams import (
    ReplicationStream,
    RowDecodeError,
    StreamPage,
    StreamRegistry,
    decode_row,
    encode_row,
    group_by_token,
)
from matrixd.streams.notifier import Notifier
from matrixd.util.clock import Clock
from tests.replication.harness import NoteRow, NotesLog


@attrs.frozen(slots=True)
class SampleRow:
    name: str
    count: int
    flag: bool
    maybe: Optional[str]
    tags: tuple[str, ...]
    extra: dict[str, Any]
    ratio: float = 1.0


async def _no_updates(from_token: int, to_token: int, limit: int) -> StreamPage[Any]:
    return StreamPage([], to_token, False)


class RowCodecTests(unittest.TestCase):
    def test_round_trip(self) -> None:
        """Rows encode to JSON objects with named fields and decode back (tuples as lists on the wire)."""
        row = SampleRow("a", 3, True, None, ("x", "y"), {"k": [1]}, 0.5)
        obj = encode_row(row)
        self.assertEqual(obj, {"name": "a", "count": 3, "flag": True, "maybe": None, "tags": ["x", "y"],
                               "extra": {"k": [1]}, "ratio": 0.5})
        self.assertEqual(decode_row(SampleRow, obj), row)

    def test_unknown_fields_ignored_and_defaults_used(self) -> None:
        """A newer writer may add fields; a missing field with a default takes it."""
        obj = {"name": "a", "count": 3, "flag": False, "maybe": "m", "tags": [], "extra": {}, "new": 1}
        self.assertEqual(decode_row(SampleRow, obj), SampleRow("a", 3, False, "m", (), {}, 1.0))

    def test_bad_rows_refused(self) -> None:
        """Missing required fields and values of the wrong type raise RowDecodeError."""
        good = {"name": "a", "count": 3, "flag": False, "maybe": None, "tags": [], "extra": {}}
        for key, value in [("count", "3"), ("count", True), ("flag", 1), ("maybe", 5), ("tags", ["x", 1]),
                           ("tags", "xy"), ("extra", []), ("name", None), ("ratio", "1")]:
            with self.assertRaises(RowDecodeError, msg=f"{key}={value!r}"):
                decode_row(SampleRow, {**good, key: value})
        with self.assertRaises(RowDecodeError):
            decode_row(SampleRow, {k: v for k, v in good.items() if k != "count"})
        with self.assertRaises(RowDecodeError):
            decode_row(SampleRow, ["not", "an", "object"])

    def test_group_by_token(self) -> None:
        """Consecutive rows of one token form one batch."""
        self.assertEqual(group_by_token([(1, "a"), (1, "b"), (3, "c")]), [(1, ["a", "b"]), (3, ["c"])])


class RegistryTests(unittest.TestCase):
    def test_entries_are_checked(self) -> None:
        """Names must be wire-safe and unique; row types must be attrs classes."""
        with self.assertRaises(ValueError):
            ReplicationStream(name="Bad Name", row_type=NoteRow, get_updates=_no_updates)
        with self.assertRaises(TypeError):
            ReplicationStream(name="ok", row_type=dict, get_updates=_no_updates)
        entry = ReplicationStream(name="ok", row_type=NoteRow, get_updates=_no_updates)
        registry = StreamRegistry([entry])
        with self.assertRaises(ValueError):
            registry.register(entry)
        self.assertEqual(registry.names(), ["ok"])
        self.assertIs(registry.get("ok"), entry)
        with self.assertRaises(KeyError):
            registry.get("nope")

    def test_cache_registry(self) -> None:
        """Cache names are registered once; unknown names are refused by check and logged by invalidate."""
        dropped: list[str] = []
        cleared: list[bool] = []
        caches = CacheRegistry()
        caches.register("tokens", dropped.extend, lambda: cleared.append(True))
        caches.register("events", dropped.extend)
        with self.assertRaises(ValueError):
            caches.register("tokens", dropped.extend)
        with self.assertRaises(ValueError):
            caches.register("two words", dropped.extend)
        self.assertTrue(caches.invalidate("tokens", ["a", "b"]))
        self.assertTrue(caches.invalidate("tokens", None))
        self.assertEqual((dropped, cleared), (["a", "b"], [True]))
        with self.assertLogs("matrixd.replication.caches", level="ERROR"):
            self.assertFalse(caches.invalidate("nope", ["x"]))
        with self.assertLogs("matrixd.replication.caches", level="ERROR"):
            self.assertFalse(caches.invalidate("events", None))
        with self.assertRaises(UnknownCacheError):
            caches.check("nope")
        with self.assertRaises(UnknownCacheError):
            caches.check("events", whole=True)
        caches.check("tokens", whole=True)
        caches.clear_all()
        self.assertEqual(cleared, [True, True])


class DispatcherTests(unittest.TestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.clock = Clock(self.reactor)
        self.notifier = Notifier(self.clock)
        self.log = NotesLog()
        self.invalidated: list[NoteRow] = []
        self.resets = 0

        def reset() -> None:
            self.resets += 1

        self.dispatcher = StreamDispatcher(
            StreamRegistry([self.log.stream(writer=False, invalidate=self.invalidated.extend, reset=reset)]),
            self.notifier, self.clock,
        )

    def test_apply_then_stale_tokens_ignored(self) -> None:
        """Rows at or below the position are not re-applied; positions never move back."""
        self.dispatcher.set_position("notes", 2)
        self.assertEqual(self.notifier.current_seq(), 0)  # set_position wakes nobody
        self.assertFalse(self.dispatcher.apply("notes", 2, [NoteRow("!r", "old")]))
        self.assertTrue(self.dispatcher.apply("notes", 3, [NoteRow("!r", "new")]))
        self.dispatcher.advance("notes", 1)
        self.assertEqual(self.dispatcher.position("notes"), 3)
        self.assertEqual(self.invalidated, [NoteRow("!r", "new")])
        self.assertEqual(self.notifier.current_token.receipts, 3)

    def test_reset_forgets_state_and_position(self) -> None:
        """reset() calls the stream's reset hook and unpositions it."""
        self.dispatcher.set_position("notes", 5)
        self.dispatcher.reset("notes")
        self.assertEqual(self.resets, 1)
        self.assertIsNone(self.dispatcher.position("notes"))

    def test_wait_for_position_cancel(self) -> None:
        """A cancelled wait is forgotten (no timer left behind)."""
        self.dispatcher.set_position("notes", 0)
        d = self.dispatcher.wait_for_stream_position("notes", 4, timeout=10)
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class PublisherTests(unittest.TestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.clock = Clock(self.reactor)
        self.log = NotesLog()
        self.log.write("!r", "before start")
        registry = StreamRegistry([self.log.stream(writer=True)])
        self.dispatcher = StreamDispatcher(registry, Notifier(self.clock), self.clock)
        self.publisher = StreamPublisher(registry, self.dispatcher, self.clock, page_size=2)
        self.sent: list[Command] = []
        self.publisher.add_sink(lambda stream, cmd: self.sent.append(cmd))

    def test_starts_at_current_token_and_pages(self) -> None:
        """Rows from before start are not re-sent; later ones go out in pages, one RDATA per token."""
        self.assertEqual(self.publisher.published_position("notes"), 1)
        for i in range(5):
            self.log.write("!r", f"r{i}", f"r{i}b")
        self.log.skip()
        self.publisher.notify("notes")
        self.assertEqual([type(c).__name__ for c in self.sent], ["RdataCommand"] * 5 + ["PositionCommand"])
        first = self.sent[0]
        assert isinstance(first, RdataCommand)
        self.assertEqual((first.token, len(first.rows)), (2, 2))
        self.assertEqual(self.sent[-1], PositionCommand("notes", 6, 7))
        self.assertEqual(self.log.fetches, [(1, 7), (3, 7), (5, 7)])
        self.assertEqual(self.dispatcher.position("notes"), 7)

    def test_failed_fetch_retried_on_next_notify_and_poll(self) -> None:
        """A failing fetch loses nothing: the next notify (or the poll) publishes from the same position."""
        fetch = self.log.get_updates
        calls = {"n": 0}

        async def flaky(from_token: int, to_token: int, limit: int) -> StreamPage[NoteRow]:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("database went away")
            return await fetch(from_token, to_token, limit)

        self.log.get_updates = flaky  # type: ignore[method-assign]
        registry = StreamRegistry([self.log.stream(writer=True)])
        publisher = StreamPublisher(registry, StreamDispatcher(registry, Notifier(self.clock), self.clock), self.clock)
        sent: list[Command] = []
        publisher.add_sink(lambda stream, cmd: sent.append(cmd))
        self.log.write("!r", "x")
        with self.assertLogs("matrixd.replication.publisher", level="ERROR"):
            publisher.notify("notes")
        self.assertEqual(sent, [])
        publisher.start_polling(5)
        self.reactor.advance(5)
        self.assertEqual([c.NAME for c in sent], ["RDATA"])
        publisher.stop()

    def test_unknown_stream_notify_is_an_error(self) -> None:
        """Notifying a stream that is not registered is a programming error."""
        with self.assertRaises(KeyError):
            self.publisher.notify("nope")

    def test_reader_entries_cannot_be_published(self) -> None:
        """The publisher refuses entries without current_token (this process does not write them)."""
        registry = StreamRegistry([self.log.stream(writer=False)])
        with self.assertRaises(ValueError):
            StreamPublisher(registry, StreamDispatcher(registry, Notifier(self.clock), self.clock), self.clock)
