"""Inbound federation rate limiting, per origin server (``rc_federation``).

Every authenticated federation request is admitted through
``FederationRateLimiter.limit(origin)`` before its servlet runs. For one
origin, counting the requests admitted during the last ``window_size``:

* beyond ``sleep_limit`` a request waits ``sleep_delay`` before it runs;
* beyond ``reject_limit`` it is refused with 429 ``M_LIMIT_EXCEEDED``
  (``retry_after_ms``: when the window will have room again); a request is
  also refused when ``reject_limit`` requests of that origin are already
  outstanding (sleeping, queued or running), so slow requests cannot pile up;
* at most ``concurrent`` requests run at once; the others queue in arrival
  order and each finished request hands its slot to the next.

Refused requests are not counted, so an origin that keeps hammering is let
through again as soon as its earlier requests leave the window. A queued or
sleeping request whose client goes away (cancellation) leaves the queue.
State is in memory, per process; idle origins are forgotten.
"""

from __future__ import annotations

import collections
import logging
from types import TracebackType
from typing import Optional

import attrs
from twisted.internet import defer

from matrixd.api.errors import LimitExceededError
from matrixd.config.ratelimiting import FederationRatelimitSettings
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)


@attrs.define
class _OriginState:
    # Admission times (seconds) of the requests still inside the window, oldest first.
    admitted: collections.deque[float] = attrs.Factory(collections.deque)
    # Requests holding a concurrency slot.
    running: int = 0
    # Admitted requests not yet running (sleeping or queued for a slot).
    waiting: int = 0
    # Requests queued for a slot, in arrival order.
    queue: collections.deque["defer.Deferred[None]"] = attrs.Factory(collections.deque)

    def outstanding(self) -> int:
        return self.running + self.waiting


class FederationRateLimiter:
    """Delays, queues and refuses requests per origin server (see the module docstring)."""

    # Sweep idle origins once this many are tracked.
    _SWEEP_AT = 10_000

    def __init__(self, clock: Clock, settings: FederationRatelimitSettings) -> None:
        self._clock = clock
        self._settings = settings
        self._window = settings.window_size_ms / 1000
        self._origins: dict[str, _OriginState] = {}

    def limit(self, origin: str) -> "_Admission":
        """``async with limiter.limit(origin):`` runs the body once the request is admitted."""
        return _Admission(self, origin)

    def running(self, origin: str) -> int:
        """How many requests of ``origin`` are running now (for tests and metrics)."""
        state = self._origins.get(origin)
        return state.running if state else 0

    def queued(self, origin: str) -> int:
        """How many admitted requests of ``origin`` wait to run (sleeping or queued)."""
        state = self._origins.get(origin)
        return state.waiting if state else 0

    async def _acquire(self, origin: str) -> None:
        s = self._settings
        now = self._clock.time()
        state = self._origins.get(origin)
        if state is None:
            if len(self._origins) >= self._SWEEP_AT:
                self._sweep(now)
            state = self._origins[origin] = _OriginState()
        self._expire(state, now)

        in_window = len(state.admitted) + 1
        if in_window > s.reject_limit:
            # The window has room again when enough of the oldest admissions leave it.
            oldest_to_leave = state.admitted[len(state.admitted) - s.reject_limit] if s.reject_limit else now
            retry_ms = max(1, int((oldest_to_leave + self._window - now) * 1000) + 1)
            logger.info("federation rate limit: refused a request from %s (%d in %d ms)",
                        origin, in_window, s.window_size_ms)
            raise LimitExceededError(retry_after_ms=retry_ms)
        if state.outstanding() >= s.reject_limit:
            logger.info("federation rate limit: refused a request from %s (%d outstanding)",
                        origin, state.outstanding())
            raise LimitExceededError(retry_after_ms=max(1, s.window_size_ms))
        state.admitted.append(now)

        state.waiting += 1
        try:
            if in_window > s.sleep_limit:
                logger.debug("federation rate limit: delaying a request from %s by %d ms", origin, s.sleep_delay_ms)
                await self._clock.sleep(s.sleep_delay_ms / 1000)
            if state.running < s.concurrent and not state.queue:
                state.running += 1
                return
            turn: defer.Deferred[None] = defer.Deferred()
            state.queue.append(turn)
            try:
                # When ``turn`` fires, the slot of a finished request has been handed to us.
                await turn
            except BaseException:
                if turn in state.queue:
                    state.queue.remove(turn)
                raise
        finally:
            state.waiting -= 1

    def _release(self, origin: str) -> None:
        state = self._origins[origin]
        while state.queue:
            turn = state.queue.popleft()
            if not turn.called:
                turn.callback(None)  # the slot moves to the next request; ``running`` stays
                return
        state.running -= 1
        if state.running == 0 and state.waiting == 0:
            self._expire(state, self._clock.time())
            if not state.admitted:
                del self._origins[origin]

    def _expire(self, state: _OriginState, now: float) -> None:
        cutoff = now - self._window
        while state.admitted and state.admitted[0] <= cutoff:
            state.admitted.popleft()

    def _sweep(self, now: float) -> None:
        for origin, state in list(self._origins.items()):
            self._expire(state, now)
            if not state.admitted and state.outstanding() == 0:
                del self._origins[origin]


class _Admission:
    """The async context manager ``FederationRateLimiter.limit`` returns."""

    def __init__(self, limiter: FederationRateLimiter, origin: str) -> None:
        self._limiter = limiter
        self._origin = origin

    async def __aenter__(self) -> None:
        await self._limiter._acquire(self._origin)

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self._limiter._release(self._origin)
