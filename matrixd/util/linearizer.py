"""A keyed async lock: work for one key runs one at a time, in arrival order.

Used to serialise event creation and persistence per room, so that each new
local event extends the forward extremities the previous one left.
"""

from __future__ import annotations

import collections
from types import TracebackType
from typing import Hashable, Optional

from twisted.internet import defer


class Linearizer:
    def __init__(self, name: str = "", max_count: int = 1) -> None:
        self.name = name
        self._max_count = max_count
        # key -> (number holding the lock, queue of waiters)
        self._state: dict[Hashable, tuple[int, collections.deque["defer.Deferred[None]"]]] = {}

    def queue(self, key: Hashable) -> "_LinearizerContext":
        """``async with linearizer.queue(key):`` runs the block holding the lock for ``key``."""
        return _LinearizerContext(self, key)

    def is_queued(self, key: Hashable) -> bool:
        entry = self._state.get(key)
        return entry is not None and bool(entry[1])

    async def _acquire(self, key: Hashable) -> None:
        count, waiters = self._state.get(key, (0, collections.deque()))
        if count < self._max_count:
            self._state[key] = (count + 1, waiters)
            return
        d: defer.Deferred[None] = defer.Deferred()
        waiters.append(d)
        self._state[key] = (count, waiters)
        try:
            await d
        except defer.CancelledError:
            if d in waiters:
                waiters.remove(d)
            else:
                # We were handed the lock as we were cancelled: pass it on.
                self._release(key)
            raise

    def _release(self, key: Hashable) -> None:
        count, waiters = self._state[key]
        if waiters:
            # Hand our slot straight to the next waiter.
            waiters.popleft().callback(None)
            return
        if count <= 1:
            del self._state[key]
        else:
            self._state[key] = (count - 1, waiters)


class _LinearizerContext:
    __slots__ = ("_lin", "_key")

    def __init__(self, lin: Linearizer, key: Hashable) -> None:
        self._lin = lin
        self._key = key

    async def __aenter__(self) -> None:
        await self._lin._acquire(self._key)

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self._lin._release(self._key)
