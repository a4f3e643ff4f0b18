"""A small resumable background-job runner whose state lives in the database.

Each job advances one bounded batch at a time (its kind's step function); the
status and progress a step returns are committed before the next step, and the
runner pauses between steps so other requests interleave: ``pause_s``, or as
long as the step took if that was longer, so a job never holds the database
for more than about half the time (on SQLite, with one connection, every
request waits while a step's transaction runs).  At
start-up ``resume_unfinished`` restarts every job not yet complete or failed; a
job whose kind is not registered any more is marked failed with a clear error
rather than left hanging.  A step that raises fails its job (error stored),
except when the database was closed under it (shutdown): then the job keeps
its committed progress and is resumed at the next start.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Optional

from twisted.internet import defer

from matrixd.handlers.admin.jobs import COMPLETE, FAILED, JobStep
from matrixd.storage.admin import AdminStore
from matrixd.storage.database import DatabaseClosedError
from matrixd.types import JsonDict
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)


class BackgroundJobRunner:
    def __init__(self, clock: Clock, store: AdminStore, pause_s: float = 0.05) -> None:
        self._clock = clock
        self._store = store
        self._pause_s = pause_s
        self._steps: dict[str, JobStep] = {}
        self._running: dict[str, "defer.Deferred[None]"] = {}

    def register(self, kind: str, step: JobStep) -> None:
        if kind in self._steps:
            raise ValueError(f"job kind {kind!r} registered twice")
        self._steps[kind] = step

    async def start(self, kind: str, room_id: Optional[str], params: JsonDict, status: str) -> str:
        if kind not in self._steps:
            raise ValueError(f"unknown job kind {kind!r}")
        job_id = secrets.token_urlsafe(12)
        await self._store.create_job(job_id, kind, room_id, params, status)
        self._launch(job_id)
        return job_id

    async def resume_unfinished(self) -> int:
        """Restart every unfinished job (after a restart); how many were resumed."""
        count = 0
        for job in await self._store.get_unfinished_jobs():
            if job.kind not in self._steps:
                await self._store.update_job(job.job_id, status=FAILED, progress=job.progress,
                                             error=f"no handler for job kind {job.kind!r} after a restart")
                continue
            logger.info("resuming admin job %s (%s, %s)", job.job_id, job.kind, job.status)
            self._launch(job.job_id)
            count += 1
        return count

    async def wait(self, job_id: str) -> None:
        running = self._running.get(job_id)
        if running is None:
            return
        # A fresh Deferred per waiter: cancelling it (the client went away) leaves the job running.
        waiter: "defer.Deferred[None]" = defer.Deferred()

        def _fire(result: object) -> object:
            if not waiter.called:
                waiter.callback(None)
            return result

        running.addBoth(_fire)
        await waiter

    def running_job_ids(self) -> list[str]:
        return list(self._running)

    def _launch(self, job_id: str) -> None:
        if job_id in self._running:
            return
        d = defer.ensureDeferred(self._run(job_id))
        self._running[job_id] = d

        def _done(_: object) -> None:
            self._running.pop(job_id, None)

        d.addBoth(_done)

    async def _run(self, job_id: str) -> None:
        while True:
            job = await self._store.get_job(job_id)
            if job is None or job.status in (COMPLETE, FAILED):
                return
            started = time.monotonic()
            try:
                result = await self._steps[job.kind](job)
            except DatabaseClosedError:
                # Shutting down: the job keeps its committed progress and resumes at the next start.
                logger.info("admin job %s paused by shutdown", job_id)
                return
            except Exception as e:
                logger.exception("admin job %s (%s) failed", job_id, job.kind)
                await self._store.update_job(job_id, status=FAILED, progress=job.progress,
                                             error=f"{type(e).__name__}: {e}")
                return
            status = COMPLETE if result.done and result.status not in (COMPLETE, FAILED) else result.status
            await self._store.update_job(job_id, status=status, progress=result.progress)
            if result.done or status in (COMPLETE, FAILED):
                return
            # Real time: the step's work is real even when the clock is a test's fake one.
            await self._clock.sleep(max(self._pause_s, time.monotonic() - started))
