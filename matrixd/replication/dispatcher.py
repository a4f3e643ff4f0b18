"""The per-stream dispatcher: the one path by which rows become visible in a process.

Master and workers run the same three steps for every batch of rows, in this
order (DESIGN principle 4):

1. ``stream.invalidate(rows)`` — drop cached data the rows make stale;
2. advance this process's position for the stream;
3. wake the Notifier (sync-token stream, keys from ``stream.wake_keys``) and
   anyone in :meth:`StreamDispatcher.wait_for_stream_position`.

Nothing is woken before the caches are right.  Positions only move forward,
except that :meth:`reset` forgets an in-memory stream's position when the
master's epoch changes.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall

from matrixd.replication import metrics
from matrixd.replication.streams import StreamRegistry
from matrixd.streams.notifier import Notifier
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)


class _PositionWaiter:
    __slots__ = ("position", "deferred", "timer")

    def __init__(self, position: int) -> None:
        self.position = position
        self.deferred: defer.Deferred[bool] = defer.Deferred()
        self.timer: Optional[IDelayedCall] = None


class StreamDispatcher:
    """Applies rows of every registered stream in this process, and tracks how far each has got."""

    def __init__(self, registry: StreamRegistry, notifier: Notifier, clock: Clock) -> None:
        self._registry = registry
        self._notifier = notifier
        self._clock = clock
        self._positions: dict[str, int] = {}
        self._waiters: dict[str, list[_PositionWaiter]] = {}

    @property
    def registry(self) -> StreamRegistry:
        return self._registry

    def position(self, stream: str) -> Optional[int]:
        """How far ``stream`` has been applied here; None before it was ever positioned."""
        return self._positions.get(stream)

    def positions(self) -> dict[str, int]:
        return dict(self._positions)

    def set_position(self, stream: str, token: int) -> None:
        """Initialise a position at start-up (the writer's current token): wakes nobody."""
        entry = self._registry.get(stream)
        self._positions[stream] = token
        metrics.STREAM_POSITION.labels(stream).set(token)
        if entry.notifier_stream is not None:
            self._notifier.set_position(entry.notifier_stream, token)

    def apply(self, stream: str, token: int, rows: Sequence[Any]) -> bool:
        """Invalidate for ``rows`` (of token ``token``, or of several tokens up to it), advance to ``token``, wake.

        Returns False (doing nothing) if the stream is already at or past ``token``.
        Raises whatever the stream's invalidation raises, before anything advanced.
        """
        entry = self._registry.get(stream)
        current = self._positions.get(stream)
        if current is not None and token <= current:
            return False
        entry.invalidate(rows)
        keys: set[str] = set()
        for row in rows:
            keys.update(entry.wake_keys(row))
        self._advance(stream, token, keys)
        return True

    def advance(self, stream: str, token: int) -> None:
        """Move to ``token`` with no rows in between (POSITION); nothing happens if not forward."""
        current = self._positions.get(stream)
        if current is not None and token <= current:
            return
        self._registry.get(stream)  # unknown streams are a bug: KeyError
        self._advance(stream, token, ())

    def reset(self, stream: str) -> None:
        """Forget an in-memory stream's state and position (the master restarted)."""
        entry = self._registry.get(stream)
        if entry.reset is not None:
            entry.reset()
        self._positions.pop(stream, None)

    def _advance(self, stream: str, token: int, keys: set[str] | tuple[()]) -> None:
        entry = self._registry.get(stream)
        self._positions[stream] = token
        metrics.STREAM_POSITION.labels(stream).set(token)
        if entry.notifier_stream is not None:
            self._notifier.on_new_position(entry.notifier_stream, token, keys)
        elif keys:
            self._notifier.wake(keys)
        waiters = self._waiters.get(stream)
        if waiters:
            ready = [w for w in waiters if w.position <= token]
            if ready:
                self._waiters[stream] = [w for w in waiters if w.position > token]
                for w in ready:
                    self._fire(w, True)

    # -- read-your-writes ----------------------------------------------------------

    def wait_for_stream_position(self, stream: str, position: int, timeout: float) -> "defer.Deferred[bool]":
        """Fire True once ``stream`` has been applied up to ``position`` here, False after ``timeout`` s.

        For a worker answering a client after the master wrote on its behalf: it
        waits for its own replica to reach the positions the write reported.
        """
        self._registry.get(stream)
        current = self._positions.get(stream)
        if current is not None and current >= position:
            return defer.succeed(True)
        if timeout <= 0:
            return defer.succeed(False)
        w = _PositionWaiter(position)
        self._waiters.setdefault(stream, []).append(w)

        def on_timeout() -> None:
            w.timer = None
            waiters = self._waiters.get(stream)
            if waiters is not None and w in waiters:
                waiters.remove(w)
            self._fire(w, False)

        w.timer = self._clock.call_later(timeout, on_timeout)

        def on_cancel(failure: Any) -> Any:
            waiters = self._waiters.get(stream)
            if waiters is not None and w in waiters:
                waiters.remove(w)
            if w.timer is not None and w.timer.active():
                w.timer.cancel()
            return failure

        w.deferred.addErrback(on_cancel)
        return w.deferred

    @staticmethod
    def _fire(w: _PositionWaiter, reached: bool) -> None:
        if w.timer is not None and w.timer.active():
            w.timer.cancel()
        w.timer = None
        if not w.deferred.called:
            w.deferred.callback(reached)
