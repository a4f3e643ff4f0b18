"""Token-bucket rate limiting."""

from twisted.internet.task import Clock as ReactorClock
from twisted.trial import unittest

from matrixd.api.errors import LimitExceededError
from matrixd.handlers.ratelimit import RateLimitConfig, Ratelimiter
from matrixd.util.clock import Clock


class RatelimiterTests(unittest.TestCase):
    def test_burst_then_refill(self) -> None:
        """Burst actions pass, the next is refused with retry_after_ms, and time refills the bucket."""
        reactor = ReactorClock()
        rl = Ratelimiter(Clock(reactor), RateLimitConfig(per_second=0.5, burst_count=3))
        for _ in range(3):
            rl.ratelimit("@u:x")
        with self.assertRaises(LimitExceededError) as cm:
            rl.ratelimit("@u:x")
        self.assertEqual(cm.exception.errcode, "M_LIMIT_EXCEEDED")
        self.assertGreater(cm.exception.to_json()["retry_after_ms"], 1000)
        rl.ratelimit("@other:x")
        reactor.advance(2.1)
        rl.ratelimit("@u:x")
