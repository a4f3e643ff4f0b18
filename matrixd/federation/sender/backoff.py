"""The retry schedule for destinations that do not accept our transactions."""

from __future__ import annotations

import random
from typing import Optional

import attrs

from matrixd.config.federation import DestinationRetrySettings
from matrixd.storage.federation_sender import RetryState


@attrs.frozen(slots=True)
class RetryPolicy:
    """Exponential backoff: the first failure waits ``min_interval_ms``, each next one
    ``multiplier`` times longer (jittered by +-``jitter``), never more than ``max_interval_ms``."""

    min_interval_ms: int = 10_000
    multiplier: float = 2.0
    max_interval_ms: int = 24 * 3600 * 1000
    jitter: float = 0.1

    def after_failure(self, previous: Optional[RetryState], now_ms: int, rng: random.Random) -> RetryState:
        if previous is None or previous.retry_interval == 0:
            interval = float(self.min_interval_ms)
            failure_ts = now_ms
        else:
            interval = previous.retry_interval * self.multiplier
            failure_ts = previous.failure_ts if previous.failure_ts is not None else now_ms
        interval = min(float(self.max_interval_ms), interval * rng.uniform(1 - self.jitter, 1 + self.jitter))
        return RetryState(retry_last_ts=now_ms, retry_interval=max(1, int(interval)), failure_ts=failure_ts)


def retry_policy_from_config(settings: DestinationRetrySettings) -> RetryPolicy:
    """The policy of the ``federation.destination_*_retry_*`` settings."""
    return RetryPolicy(min_interval_ms=settings.min_interval_ms, multiplier=settings.multiplier,
                       max_interval_ms=settings.max_interval_ms)


#: A destination that is up.
UP = RetryState(retry_last_ts=0, retry_interval=0, failure_ts=None)
