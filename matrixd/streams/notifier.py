"""Wakes long-polling requests (``/sync``, ``/events``) when a stream they care about moves.

Announcers call :meth:`Notifier.on_new_position` *after* the rows are visible
(committed and caches invalidated), naming the keys the change concerns: room
ids for room-scoped streams (events, typing, receipts), user ids for
user-scoped ones (account data, to-device, invites).  Waiters register the keys
they care about.  Wake-ups are hints: the woken request recomputes what is new
for it, so waking too often is harmless and waking too rarely is the only bug.

The lost-wake-up race (a change lands between a waiter computing "nothing new"
and registering) is closed by sequence numbers: the waiter captures
:meth:`current_seq` *before* it computes, and registration returns at once if
any of its keys was notified after that sequence.
"""

from __future__ import annotations

from typing import Collection, Iterable, Optional

from prometheus_client import Counter, Gauge
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall

from matrixd.streams.token import StreamName, StreamToken
from matrixd.util.clock import Clock

# Synapse's names: waiters woken per stream, and waiters registered right now.
_WOKEN_BY_STREAM = Counter("synapse_notifier_users_woken_by_stream", "Waiting requests woken, by stream", ["stream"])
_LISTENERS = Gauge("synapse_notifier_listeners", "Requests waiting for a stream to move")


class _Waiter:
    __slots__ = ("deferred", "keys", "timer")

    def __init__(self, keys: Collection[str]) -> None:
        self.deferred: defer.Deferred[bool] = defer.Deferred()
        self.keys = keys
        self.timer: Optional[IDelayedCall] = None


class Notifier:
    """The per-process hub between stream writers/replication and waiting requests."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._token = StreamToken()
        self._seq = 0
        self._key_seq: dict[str, int] = {}
        self._waiters: dict[str, set[_Waiter]] = {}
        self._token_waiters: list[tuple[StreamToken, "defer.Deferred[None]"]] = []
        _LISTENERS.set_function(self.waiter_count)  # one notifier per process

    # -- positions -----------------------------------------------------------

    @property
    def current_token(self) -> StreamToken:
        """The positions this process has made visible to readers."""
        return self._token

    def current_seq(self) -> int:
        return self._seq

    def set_position(self, stream: StreamName, position: int) -> None:
        """Initialise a stream position at start-up (wakes nobody)."""
        self._token = self._token.copy_and_advance(stream, position)

    def on_new_position(self, stream: StreamName, position: int, keys: Iterable[str] = ()) -> None:
        """Record that ``stream`` reached ``position`` and wake waiters on ``keys``."""
        self._token = self._token.copy_and_advance(stream, position)
        self._wake_keys(stream, keys)

    def wake(self, keys: Iterable[str]) -> None:
        """Wake waiters on ``keys`` for a change no stream position carries (a current-state change
        without an event, e.g. a partial-state room's full state)."""
        self._wake_keys(StreamName.EVENTS, keys)

    def _wake_keys(self, stream: StreamName, keys: Iterable[str]) -> None:
        self._seq += 1
        seq = self._seq
        for key in keys:
            self._key_seq[key] = seq
            waiters = self._waiters.pop(key, None)
            if waiters:
                _WOKEN_BY_STREAM.labels(stream.value).inc(len(waiters))
                for w in list(waiters):
                    self._fire(w, True)
        if self._token_waiters:
            self._check_token_waiters()

    # -- waiting -------------------------------------------------------------

    def wait_for_keys(self, keys: Collection[str], since_seq: int, timeout: float) -> "defer.Deferred[bool]":
        """Wait until one of ``keys`` is notified after ``since_seq``, or ``timeout`` seconds.

        Fires True when woken by a notification, False on timeout.
        """
        for key in keys:
            if self._key_seq.get(key, 0) > since_seq:
                return defer.succeed(True)
        if timeout <= 0:
            return defer.succeed(False)
        w = _Waiter(keys)
        for key in keys:
            self._waiters.setdefault(key, set()).add(w)
        w.timer = self._clock.call_later(timeout, self._fire, w, False)
        w.deferred.addErrback(self._on_cancel, w)
        return w.deferred

    def _on_cancel(self, failure: object, w: _Waiter) -> object:
        self._remove(w)
        return failure

    def _remove(self, w: _Waiter) -> None:
        if w.timer is not None and w.timer.active():
            w.timer.cancel()
        for key in w.keys:
            s = self._waiters.get(key)
            if s is not None:
                s.discard(w)
                if not s:
                    del self._waiters[key]

    def _fire(self, w: _Waiter, woken: bool) -> None:
        if w.deferred.called:
            return
        self._remove(w)
        w.deferred.callback(woken)

    def waiter_count(self) -> int:
        return len({id(w) for ws in self._waiters.values() for w in ws})

    # -- read-your-writes across processes -------------------------------------

    def wait_for_token(self, token: StreamToken, timeout: float) -> "defer.Deferred[None]":
        """Fire once every stream position here has reached ``token`` (or on timeout).

        Used when a client presents a token issued by a process that is ahead of
        this one; waiting is bounded so a bogus far-future token cannot hang a request.
        """
        if not token.is_after(self._token):
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        entry = (token, d)
        self._token_waiters.append(entry)

        def on_timeout() -> None:
            if entry in self._token_waiters:
                self._token_waiters.remove(entry)
            if not d.called:
                d.callback(None)

        timer = self._clock.call_later(timeout, on_timeout)

        def stop_timer(r: None) -> None:
            if timer.active():
                timer.cancel()
            return r

        d.addBoth(stop_timer)
        return d

    def _check_token_waiters(self) -> None:
        ready = [e for e in self._token_waiters if not e[0].is_after(self._token)]
        for e in ready:
            self._token_waiters.remove(e)
            if not e[1].called:
                e[1].callback(None)
