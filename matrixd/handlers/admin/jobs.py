"""The contract between admin handlers and the resumable background-job runner.

A long admin operation (deleting a room, purging history) is a *job*: a row in
``admin_jobs`` plus a step function that does one bounded batch and returns the
job's new status and progress.  The runner (``matrixd.app.background``) commits
the progress after every step and pauses between steps, so requests keep their
latency, and a restart resumes every unfinished job from its last committed
progress.  Steps must therefore be idempotent with respect to a batch that was
done but whose progress was not yet committed.
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable, Optional, Protocol

import attrs

from matrixd.storage.admin import AdminJob
from matrixd.types import JsonDict

COMPLETE = "complete"
FAILED = "failed"


@attrs.frozen(slots=True)
class StepResult:
    """What one batch did: the status and progress to commit; ``done`` ends the job."""

    status: str
    progress: JsonDict
    done: bool = False


JobStep = Callable[[AdminJob], Awaitable[StepResult]]


class JobRunner(Protocol):
    def register(self, kind: str, step: JobStep) -> None:
        """Declare how to advance jobs of ``kind`` (once, at wiring time)."""

    async def start(self, kind: str, room_id: Optional[str], params: JsonDict, status: str) -> str:
        """Store a new job and start running it; returns its id."""

    async def wait(self, job_id: str) -> None:
        """Return once this process stops advancing the job (done, failed, or paused by shutdown).

        Cancelling the wait (a client that went away) does not touch the job.
        """

    def running_job_ids(self) -> list[str]:
        """Jobs this process is advancing now (for tests and status pages)."""


class BatchSizer:
    """Sizes a job's batches so each one's transaction takes about ``target_s``.

    A fixed row count is the wrong bound: what a request waiting behind a
    batch feels is its duration, and the cost of a row differs by engine
    (SQLite has one connection, so every request queues behind the batch),
    by table and by disk.  After each batch the size moves halfway towards
    what would have taken ``target_s`` at the measured rate, within
    ``[minimum, maximum]``.

    ``timer`` measures real elapsed time (the work is real even under a fake
    clock); tests pass their own.
    """

    def __init__(self, *, initial: int, minimum: int, maximum: int, target_s: float,
                 timer: Callable[[], float] = time.monotonic) -> None:
        if not 0 < minimum <= initial <= maximum:
            raise ValueError(f"need 0 < minimum <= initial <= maximum, got {minimum}, {initial}, {maximum}")
        self._size = initial
        self._min = minimum
        self._max = maximum
        self._target = target_s
        self.timer = timer

    @property
    def size(self) -> int:
        return self._size

    def record(self, count: int, seconds: float) -> None:
        """A batch of ``count`` items took ``seconds``: adjust the next size."""
        if count <= 0:
            return
        ideal = self._max if seconds <= 0 else int(count * self._target / seconds)
        self._size = max(self._min, min(self._max, (self._size + ideal) // 2))
