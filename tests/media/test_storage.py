"""The filesystem media store: safe sharded paths, atomic writes, size limits, the thread pool."""

from __future__ import annotations

import io
import os
from typing import Any, Callable, Optional

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.media.blocking import BlockingRunner
from matrixd.media.storage import FileLocation, FileTooLargeError, FilesystemMediaStorage
from matrixd.testing.http import TestReactor, make_reactor


class _RecordingPool:
    """A thread pool that runs work inline and records that it was asked to."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def callInThreadWithCallback(self, on_result: Optional[Callable[[bool, Any], object]],
                                 func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.calls.append(getattr(func, "__name__", repr(func)))
        result = func(*args, **kwargs)
        if on_result is not None:
            on_result(True, result)


class _RecordingReactor(TestReactor):
    def __init__(self) -> None:
        super().__init__()
        self.pool = _RecordingPool()

    def getThreadPool(self) -> Any:
        return self.pool


class FileLocationTestCase(unittest.TestCase):
    def test_sharded_paths(self) -> None:
        """Local, remote and thumbnail files are sharded by the first four id characters."""
        self.assertEqual(FileLocation("abcdefgh").relative_path(), "local_content/ab/cd/efgh")
        self.assertEqual(FileLocation("abcdefgh", origin="ex.org").relative_path(),
                         "remote_content/ex.org/ab/cd/efgh")
        self.assertEqual(FileLocation("abcdefgh", thumbnail="32-32-crop").relative_path(),
                         "local_thumbnails/ab/cd/efgh/32-32-crop")
        self.assertEqual(FileLocation("abcd", origin="[::1]:8448", thumbnail="t").relative_path(),
                         "remote_thumbnails/[::1]:8448/_short/abcd/t")

    def test_unsafe_parts_refused(self) -> None:
        """Ids, server names and thumbnail names that could leave the store are refused."""
        for kwargs in ({"media_id": "../etc"}, {"media_id": "a/b"}, {"media_id": ""},
                       {"media_id": "abc", "origin": ".."}, {"media_id": "abc", "origin": "a/b"},
                       {"media_id": "abc", "origin": ".hidden"}, {"media_id": "abc", "thumbnail": "../x"}):
            with self.assertRaises(ValueError, msg=str(kwargs)):
                FileLocation(**kwargs)


class FilesystemStorageTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.reactor = _RecordingReactor()
        self.base = os.path.abspath(self.mktemp())
        self.storage = FilesystemMediaStorage(self.base, BlockingRunner(self.reactor))

    def run_d(self, coro: Any) -> Any:
        d = defer.ensureDeferred(coro)
        self.reactor.advance(0)
        return d

    def test_store_and_open(self) -> None:
        """A stored file reads back; length and sha256 are computed; the copy ran on the thread pool."""
        loc = FileLocation("abcdefgh")
        stored = self.successResultOf(self.run_d(self.storage.store_file(io.BytesIO(b"hello"), loc)))
        self.assertEqual(stored.length, 5)
        self.assertEqual(stored.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        f = self.storage.open(loc)
        assert f is not None
        with f:
            self.assertEqual(f.read(), b"hello")
        self.assertEqual(self.reactor.pool.calls, ["_store_file_blocking"])
        self.assertEqual(os.listdir(os.path.join(self.base, "tmp")), [])

    def test_too_large_leaves_nothing(self) -> None:
        """Going over max_size fails with FileTooLargeError and leaves no file, not even a temp file."""
        loc = FileLocation("abcdefgh")
        d = self.run_d(self.storage.store_file(io.BytesIO(b"x" * 100), loc, max_size=99))
        self.failureResultOf(d, FileTooLargeError)
        self.assertIsNone(self.storage.open(loc))
        self.assertEqual(os.listdir(os.path.join(self.base, "tmp")), [])

    def test_writer_commit_and_abort(self) -> None:
        """A writer's file appears only on commit; abort discards it."""
        loc = FileLocation("remoteId", origin="ex.org")
        writer = self.storage.open_writer(loc)
        writer.write(b"part1")
        self.assertIsNone(self.storage.open(loc))
        writer.write(b"part2")
        stored = self.successResultOf(self.run_d(writer.commit()))
        self.assertEqual(stored.length, 10)
        f = self.storage.open(loc)
        assert f is not None
        with f:
            self.assertEqual(f.read(), b"part1part2")
        other = self.storage.open_writer(FileLocation("otherId", origin="ex.org"))
        other.write(b"junk")
        self.successResultOf(self.run_d(other.abort()))
        self.assertIsNone(self.storage.open(FileLocation("otherId", origin="ex.org")))
        self.assertEqual(os.listdir(os.path.join(self.base, "tmp")), [])

    def test_default_test_reactor_runs_inline(self) -> None:
        """The shared test reactor's pool runs blocking work inline (delivered on the next tick)."""
        reactor = make_reactor()
        d = defer.ensureDeferred(BlockingRunner(reactor).run(lambda: 42))
        reactor.advance(0)
        self.assertEqual(self.successResultOf(d), 42)
