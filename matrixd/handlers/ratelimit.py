"""Token-bucket rate limiting keyed by requester (user, device, IP...).

Config shape follows Synapse's ``rc_*`` sections: ``per_second`` tokens are
refilled continuously up to ``burst_count``; an action costs one token.
"""

from __future__ import annotations

from typing import Hashable, Optional, Protocol

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

    def can_do_action(self, key: Hashable, cost: float = 1.0, update: bool = True,
                      config: Optional[RateLimitConfig] = None) -> tuple[bool, float]:
        """Return (allowed, seconds until allowed) and consume ``cost`` if allowed and ``update``.

        ``config``: this key's own limits instead of the limiter's (a per-user
        override); ``per_second`` 0 means no limit.
        """
        config = config or self._config
        rate, burst = config.per_second, config.burst_count
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

    def ratelimit(self, key: Hashable, cost: float = 1.0, config: Optional[RateLimitConfig] = None) -> None:
        """Consume ``cost`` for ``key`` (under ``config`` if given) or raise LimitExceededError."""
        allowed, wait = self.can_do_action(key, cost, config=config)
        if not allowed:
            raise LimitExceededError(retry_after_ms=int(wait * 1000) + 1)

    def reset(self, key: Hashable) -> None:
        self._buckets.pop(key, None)

    def _prune(self, now: float) -> None:
        rate = self._config.per_second
        for k, (used, last) in list(self._buckets.items()):
            if used - (now - last) * rate <= 0:
                del self._buckets[k]


class OverrideSource(Protocol):
    """Where per-user overrides are stored (``matrixd.storage.admin.AdminStore``)."""

    async def get_ratelimit_override(self, user_id: str) -> Optional[tuple[int, int]]:
        """``(messages_per_second, burst_count)`` for ``user_id``, or None."""
        ...


class RatelimitOverrides:
    """Per-user message rate limits set with the admin API, cached for ``ttl`` seconds.

    The admin handler invalidates a user's entry when it changes one on this
    process; other processes notice within ``ttl``.  An override of
    ``messages_per_second`` 0 lifts the limit (whatever ``burst_count`` says).
    """

    def __init__(self, clock: Clock, source: OverrideSource, ttl: float = 30.0) -> None:
        self._clock = clock
        self._source = source
        self._ttl = ttl
        self._cache: dict[str, tuple[float, Optional[RateLimitConfig]]] = {}

    async def get(self, user_id: str) -> Optional[RateLimitConfig]:
        """The user's own limits, or None to use the configured ones."""
        now = self._clock.time()
        cached = self._cache.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await self._source.get_ratelimit_override(user_id)
        config = None if row is None else RateLimitConfig(float(row[0]), float(row[1]))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[user_id] = (now + self._ttl, config)
        return config

    def invalidate(self, user_id: str) -> None:
        self._cache.pop(user_id, None)
