"""Shared plumbing for the operator commands: config loading with clear errors,
and running the async storage API synchronously (no reactor)."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Coroutine, NoReturn, TypeVar

from twisted.internet import defer

from matrixd.api.errors import ConfigError
from matrixd.config import RootConfig, load_config

T = TypeVar("T")


class CommandError(Exception):
    """A problem the operator must fix; printed without a traceback."""


def fail(message: str, status: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(status)


def load_config_or_fail(path: str) -> RootConfig:
    try:
        return load_config(path)
    except ConfigError as e:
        fail(f"bad config {path}: {e}")


class _ImmediateCall:
    def cancel(self) -> None:
        return None

    def active(self) -> bool:
        return False


class ImmediateReactor:
    """Just enough reactor for an inline Database: timers fire at once (retry backoff is skipped)."""

    def seconds(self) -> float:
        return time.time()

    def callLater(self, _delay: float, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> _ImmediateCall:
        fn(*args, **kwargs)
        return _ImmediateCall()

    def callFromThread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        fn(*args, **kwargs)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine of the storage API whose database work is inline: it completes at once."""
    d = defer.ensureDeferred(coro)
    results: list[T] = []
    failures: list[Any] = []
    d.addCallbacks(results.append, failures.append)
    if failures:
        failures[0].raiseException()
    if not results:
        raise RuntimeError("an inline database operation did not complete synchronously")
    return results[0]
