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
