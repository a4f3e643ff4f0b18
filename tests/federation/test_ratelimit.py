"""Inbound federation rate limiting per origin (``rc_federation``): delay, queue, refuse."""

from __future__ import annotations

import urllib.parse
from typing import Any, Optional

from twisted.internet import defer, task
from twisted.trial import unittest

from matrixd.api.errors import LimitExceededError
from matrixd.config.ratelimiting import FederationRatelimitSettings
from matrixd.handlers.federation_ratelimit import FederationRateLimiter
from matrixd.testing.federation import FakeRemoteServer
from matrixd.util.clock import Clock
from tests.federation.utils import make_federating_homeserver

A = "a.example"
B = "b.example"


class _Request:
    """One request of an origin: admitted through the limiter, runs until ``finish``."""

    def __init__(self, limiter: FederationRateLimiter, origin: str) -> None:
        self.started = False
        self.error: Optional[BaseException] = None
        self._done: defer.Deferred[None] = defer.Deferred()
        self.deferred = defer.ensureDeferred(self._run(limiter, origin))
        self.deferred.addErrback(self._record)

    async def _run(self, limiter: FederationRateLimiter, origin: str) -> None:
        async with limiter.limit(origin):
            self.started = True
            await self._done

    def _record(self, failure: Any) -> None:
        self.error = failure.value

    def finish(self) -> None:
        self._done.callback(None)


class FederationRateLimiterTestCase(unittest.TestCase):
    def make(self, **overrides: Any) -> FederationRateLimiter:
        self.reactor = task.Clock()
        self.reactor.advance(1_000)
        settings = FederationRatelimitSettings(**{
            "window_size_ms": 1000, "sleep_limit": 3, "sleep_delay_ms": 500, "reject_limit": 6,
            "concurrent": 100, **overrides,
        })
        return FederationRateLimiter(Clock(self.reactor), settings)

    def start(self, limiter: FederationRateLimiter, origin: str, n: int) -> list[_Request]:
        return [_Request(limiter, origin) for _ in range(n)]

    def test_requests_within_sleep_limit_run_at_once(self) -> None:
        """Up to sleep_limit requests in a window start immediately."""
        limiter = self.make()
        reqs = self.start(limiter, A, 3)
        self.assertEqual([r.started for r in reqs], [True, True, True])

    def test_requests_beyond_sleep_limit_are_delayed(self) -> None:
        """The requests after sleep_limit in a window wait sleep_delay, then run."""
        limiter = self.make()
        reqs = self.start(limiter, A, 5)
        self.assertEqual([r.started for r in reqs], [True, True, True, False, False])
        self.assertEqual(limiter.queued(A), 2)
        self.reactor.advance(0.499)
        self.assertFalse(reqs[3].started)
        self.reactor.advance(0.001)
        self.assertTrue(reqs[3].started and reqs[4].started)
        self.assertEqual(limiter.running(A), 5)

    def test_requests_beyond_reject_limit_are_refused_with_retry_after(self) -> None:
        """The request after reject_limit in a window gets 429 M_LIMIT_EXCEEDED saying when to retry."""
        limiter = self.make()
        first = self.start(limiter, A, 1)
        self.reactor.advance(0.4)
        self.start(limiter, A, 5)
        refused = _Request(limiter, A)
        self.assertIsInstance(refused.error, LimitExceededError)
        assert isinstance(refused.error, LimitExceededError)
        self.assertEqual(refused.error.code, 429)
        self.assertEqual(refused.error.errcode, "M_LIMIT_EXCEEDED")
        # The first request leaves the window 0.6 s from now.
        self.assertEqual(refused.error.retry_after_ms, 601)
        self.assertFalse(refused.started)
        self.assertTrue(first[0].started)

    def test_refused_requests_do_not_count_and_the_window_slides(self) -> None:
        """Once earlier requests leave the window, the origin is admitted again."""
        limiter = self.make()
        reqs = self.start(limiter, A, 6)
        for _ in range(3):
            self.assertIsInstance(_Request(limiter, A).error, LimitExceededError)
        self.reactor.advance(0.5)
        for r in reqs:
            r.finish()
        self.reactor.advance(0.5)
        again = _Request(limiter, A)
        self.assertIsNone(again.error)
        self.assertTrue(again.started)

    def test_origins_are_limited_independently(self) -> None:
        """One origin over its limits does not delay or refuse another."""
        limiter = self.make()
        self.start(limiter, A, 6)
        self.assertIsInstance(_Request(limiter, A).error, LimitExceededError)
        other = _Request(limiter, B)
        self.assertTrue(other.started)

    def test_concurrency_is_bounded_and_slots_pass_in_arrival_order(self) -> None:
        """At most ``concurrent`` requests of an origin run; a finished one lets the oldest queued one in."""
        limiter = self.make(concurrent=2, sleep_limit=100, reject_limit=100)
        reqs = self.start(limiter, A, 4)
        self.assertEqual([r.started for r in reqs], [True, True, False, False])
        self.assertEqual((limiter.running(A), limiter.queued(A)), (2, 2))
        reqs[1].finish()
        self.assertEqual([r.started for r in reqs], [True, True, True, False])
        reqs[0].finish()
        self.assertTrue(reqs[3].started)
        self.assertEqual(limiter.running(A), 2)
        # Another origin has its own slots.
        self.assertTrue(_Request(limiter, B).started)

    def test_outstanding_requests_beyond_reject_limit_are_refused(self) -> None:
        """Slow requests cannot pile up: reject_limit outstanding requests refuse the next one."""
        limiter = self.make(concurrent=1, sleep_limit=100, reject_limit=3, window_size_ms=100)
        reqs = []
        for _ in range(3):
            reqs += self.start(limiter, A, 1)
            self.reactor.advance(0.2)  # each request alone in its window
        self.assertEqual((limiter.running(A), limiter.queued(A)), (1, 2))
        refused = _Request(limiter, A)
        self.assertIsInstance(refused.error, LimitExceededError)
        reqs[0].finish()
        self.assertIsNone(_Request(limiter, A).error)

    def test_cancelled_queued_request_leaves_the_queue(self) -> None:
        """A queued request whose client went away does not take a slot."""
        limiter = self.make(concurrent=1, sleep_limit=100, reject_limit=100)
        running, gone, waiting = self.start(limiter, A, 3)
        gone.deferred.cancel()
        self.assertEqual(limiter.queued(A), 1)
        running.finish()
        self.assertFalse(gone.started)
        self.assertTrue(waiting.started)
        self.assertEqual(limiter.running(A), 1)

    def test_cancelled_sleeping_request_is_forgotten(self) -> None:
        """A request cancelled during its delay never runs and frees its place."""
        limiter = self.make()
        reqs = self.start(limiter, A, 4)
        reqs[3].deferred.cancel()
        self.assertEqual(limiter.queued(A), 0)
        self.reactor.advance(1)
        self.assertFalse(reqs[3].started)

    def test_idle_origins_are_forgotten(self) -> None:
        """Once its requests are finished and out of the window, an origin holds no state."""
        limiter = self.make()
        reqs = self.start(limiter, A, 2)
        self.reactor.advance(2)
        for r in reqs:
            r.finish()
        self.assertEqual(limiter._origins, {})

    def test_failing_request_releases_its_slot(self) -> None:
        """A request whose handler raises gives its slot to the next one."""
        limiter = self.make(concurrent=1, sleep_limit=100, reject_limit=100)

        async def failing() -> None:
            async with limiter.limit(A):
                raise ValueError("boom")

        d = defer.ensureDeferred(failing())
        self.failureResultOf(d, ValueError)
        self.assertTrue(_Request(limiter, A).started)


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class FederationRateLimitEndpointTestCase(unittest.TestCase):
    """The limiter applied at the federation HTTP edge of a full homeserver (both engines)."""

    def setUp(self) -> None:
        config = {"rc_federation": {"window_size": 1000, "sleep_limit": 2, "sleep_delay": 500,
                                    "reject_limit": 4, "concurrent": 10}}
        self.hs, self.network, self.remote = make_federating_homeserver(self, config)
        self.other = FakeRemoteServer(self.network, "other.test")
        self.alice, _ = self.hs.create_user("alice")
        self.path = f"/_matrix/federation/v1/query/profile?user_id={q(self.alice)}"

    def get(self, server: FakeRemoteServer) -> Any:
        return server.request(self.hs, "GET", self.path, await_result=False)

    def fetch_keys(self, server: FakeRemoteServer) -> None:
        """One request that makes us fetch ``server``'s keys (the network needs the clock pumped)."""
        channel = server.request(self.hs, "GET", self.path)
        self.assertEqual(channel.code, 200, channel.result_body)

    def test_delayed_then_refused_then_admitted_again(self) -> None:
        """An origin's requests past sleep_limit wait, past reject_limit get 429; others are unaffected."""
        self.fetch_keys(self.other)
        self.fetch_keys(self.remote)
        self.hs.reactor.advance(2)  # the key fetches leave the window
        first = self.get(self.remote)
        self.assertTrue(first.is_finished())
        self.assertEqual(first.code, 200, first.result_body)
        second, third, fourth = (self.get(self.remote) for _ in range(3))
        self.assertTrue(second.is_finished())
        self.assertFalse(third.is_finished())  # delayed by sleep_delay
        self.assertFalse(fourth.is_finished())
        fifth = self.get(self.remote)
        self.assertTrue(fifth.is_finished())
        self.assertEqual(fifth.code, 429, fifth.result_body)
        self.assertEqual(fifth.json_body["errcode"], "M_LIMIT_EXCEEDED")
        self.assertGreater(fifth.json_body["retry_after_ms"], 0)

        other = self.get(self.other)
        self.assertTrue(other.is_finished())
        self.assertEqual(other.code, 200, other.result_body)

        self.hs.reactor.advance(0.5)
        for channel in (third, fourth):
            self.assertTrue(channel.is_finished())
            self.assertEqual(channel.code, 200, channel.result_body)
        self.hs.reactor.advance(1)
        again = self.get(self.remote)
        self.assertTrue(again.is_finished())
        self.assertEqual(again.code, 200, again.result_body)

    def test_unauthenticated_requests_are_not_counted(self) -> None:
        """Requests that fail X-Matrix authentication are refused before the limiter sees them."""
        self.fetch_keys(self.remote)
        self.hs.reactor.advance(2)
        for _ in range(6):
            bad = self.remote.request(self.hs, "GET", self.path, authorization=b"X-Matrix origin=remote.test")
            self.assertEqual(bad.code, 401, bad.result_body)
        ok = self.get(self.remote)
        self.assertTrue(ok.is_finished())
        self.assertEqual(ok.code, 200, ok.result_body)
