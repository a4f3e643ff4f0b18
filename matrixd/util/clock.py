"""An injected clock: every timer and timestamp in matrixd goes through one of these.

Built on a reactor's ``IReactorTime`` so tests can pass ``twisted.internet.task.Clock``
(or a ``MemoryReactorClock``) and advance time deterministically.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall, IReactorTime


class Clock:
    def __init__(self, reactor: IReactorTime) -> None:
        self._reactor = reactor

    @property
    def reactor(self) -> IReactorTime:
        return self._reactor

    def time(self) -> float:
        """Seconds since the epoch."""
        return self._reactor.seconds()

    def time_msec(self) -> int:
        """Milliseconds since the epoch, as used in events and tokens."""
        return int(self._reactor.seconds() * 1000)

    def sleep(self, seconds: float) -> "defer.Deferred[None]":
        def cancel(_d: "defer.Deferred[None]") -> None:
            if call.active():
                call.cancel()

        d: defer.Deferred[None] = defer.Deferred(cancel)
        call = self._reactor.callLater(seconds, d.callback, None)
        return d

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> IDelayedCall:
        return self._reactor.callLater(delay, fn, *args, **kwargs)

    def looping_call(self, fn: Callable[[], Any], interval: float, now: bool = False) -> task.LoopingCall:
        """Call ``fn`` every ``interval`` seconds until the returned call is stopped."""
        call = task.LoopingCall(fn)
        call.clock = self._reactor
        call.start(interval, now=now).addErrback(lambda f: None)
        return call
