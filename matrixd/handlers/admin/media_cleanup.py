"""Deleting media in bulk as a resumable background job (kind ``delete_media``).

Each step does one bounded batch: first the files of items already forgotten
(logged with ``file_deleted`` false), deleted on the thread pool, then the next
batch of matching rows, forgotten and logged in one transaction (see
``matrixd.storage.media_cleanup``).  Rows go before files, so no row ever
points at a missing file; the log makes a restart finish the files too.  A file
already missing on disk is fine.

The admin endpoints answer when the job is done (synadm waits for the list);
the job itself runs in the runner's batches, pausing between them, so the
server keeps serving other requests, and it is resumed after a restart even
though the request that started it is gone (its count stays in ``admin_jobs``
and the log; a waiting request drops the log once it has answered).
"""

from __future__ import annotations

import logging
from typing import Optional

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.admin.jobs import COMPLETE, FAILED, JobRunner, StepResult
from matrixd.media.storage import FileLocation, FilesystemMediaStorage
from matrixd.storage.admin import AdminJob, AdminStore
from matrixd.storage.media_cleanup import LOCAL, REMOTE, MediaCleanupStore, MediaSelection

logger = logging.getLogger(__name__)

DELETE_MEDIA = "delete_media"
ACTIVE = "active"


class MediaCleanup:
    def __init__(self, *, server_name: str, store: MediaCleanupStore, jobs: AdminStore,
                 storage: FilesystemMediaStorage, runner: JobRunner, batch_size: int = 100) -> None:
        self._server_name = server_name
        self._store = store
        self._jobs = jobs
        self._storage = storage
        self._runner = runner
        self._batch = batch_size
        runner.register(DELETE_MEDIA, self._step)

    async def delete_local_before(self, before_ts: int, size_gt: int,
                                  keep_profiles: bool) -> list[tuple[Optional[str], str]]:
        return await self.run(MediaSelection(LOCAL, before_ts=before_ts, size_gt=size_gt,
                                             keep_profiles=keep_profiles))

    async def delete_local_one(self, media_id: str) -> list[tuple[Optional[str], str]]:
        return await self.run(MediaSelection(LOCAL, media_id=media_id))

    async def purge_remote_before(self, before_ts: int) -> list[tuple[Optional[str], str]]:
        return await self.run(MediaSelection(REMOTE, before_ts=before_ts))

    async def start(self, selection: MediaSelection) -> str:
        """Start a cleanup job without waiting for it; its id."""
        return await self._runner.start(DELETE_MEDIA, None, selection.to_json(), ACTIVE)

    async def run(self, selection: MediaSelection) -> list[tuple[Optional[str], str]]:
        """Run a cleanup job to its end; what it deleted, ``(origin or None, media_id)``."""
        job_id = await self.start(selection)
        await self._runner.wait(job_id)
        job = await self._jobs.get_job(job_id)
        if job is None or job.status == FAILED:
            raise MatrixError(500, f"Media cleanup {job_id} failed: {job.error if job else 'job lost'}",
                              Codes.UNKNOWN)
        if job.status != COMPLETE:
            # Paused by a shutdown: it resumes at the next start.
            raise MatrixError(503, f"Media cleanup {job_id} was interrupted and resumes after a restart",
                              Codes.UNKNOWN)
        deleted = await self._store.deleted_media(job_id)
        await self._store.forget_job(job_id)
        return deleted

    async def _step(self, job: AdminJob) -> StepResult:
        files = await self._store.files_to_delete(job.job_id, self._batch)
        if files:
            for origin, media_id in files:
                try:
                    location = FileLocation(media_id, origin=origin)
                except ValueError:
                    continue  # an id no file could have been stored under
                await self._storage.delete(location)
            await self._store.mark_files_deleted(job.job_id, files)
            return StepResult(ACTIVE, {"deleted": await self._store.count_deleted(job.job_id)})
        selection = MediaSelection.from_json(job.params)
        if await self._store.delete_batch(job.job_id, selection, self._server_name, self._batch):
            return StepResult(ACTIVE, {"deleted": await self._store.count_deleted(job.job_id)})
        count = await self._store.count_deleted(job.job_id)
        logger.info("media cleanup %s complete: %d items deleted", job.job_id, count)
        return StepResult(COMPLETE, {"deleted": count}, done=True)
