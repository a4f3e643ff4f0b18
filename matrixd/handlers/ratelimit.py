"""Token-bucket rate limiting keyed by requester (user, device, IP...).

Config shape follows Synapse's ``rc_*`` sections: ``per_second`` tokens are
refilled continuously up to ``burst_count``; an action costs one token.
"""

from __future__ import annotations

from typing import Hashable

import attrs

from matrixd.api.errors import LimitExceededError
from matrixd.util.clock import Clock


@attrs.frozen(slots=True)
class RateLimitConfig:
    per_second: float
    burst_count: float


class Ratelimiter:
    """One bucket per key; refuses with M_LIMIT_EXCEEDED and ``retry_after_ms``."""

    def __init__(self, clock: Clock, config: RateLimitConfig, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._config = config
        self._max_keys = max_keys
        # key -> (tokens used, last update time)
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def can_do_action(self, key: Hashable, cost: float = 1.0, update: bool = True) -> tuple[bool, float]:
        """Return (allowed, seconds until allowed) and consume ``cost`` if allowed and ``update``."""
        rate, burst = self._config.per_second, self._config.burst_count
        if rate <= 0:
            return True, 0.0
        now = self._clock.time()
        used, last = self._buckets.get(key, (0.0, now))
        used = max(0.0, used - (now - last) * rate)
        if used + cost > burst:
            wait = (used + cost - burst) / rate
            return False, wait
        if update:
            if len(self._buckets) >= self._max_keys and key not in self._buckets:
                self._prune(now)
            self._buckets[key] = (used + cost, now)
        return True, 0.0

    def ratelimit(self, key: Hashable, cost: float = 1.0) -> None:
        """Consume ``cost`` for ``key`` or raise LimitExceededError."""
        allowed, wait = self.can_do_action(key, cost)
        if not allowed:
            raise LimitExceededError(retry_after_ms=int(wait * 1000) + 1)

    def reset(self, key: Hashable) -> None:
        self._buckets.pop(key, None)

    def _prune(self, now: float) -> None:
        rate = self._config.per_second
        for k, (used, last) in list(self._buckets.items()):
            if used - (now - last) * rate <= 0:
                del self._buckets[k]
