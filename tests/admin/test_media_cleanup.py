"""Media cleanup jobs: bounded batches in the background, rows before files, resumption after a restart."""

from __future__ import annotations

import os
from typing import Optional

from matrixd.app.background import BackgroundJobRunner
from matrixd.handlers.admin.media_cleanup import DELETE_MEDIA, MediaCleanup
from matrixd.media.storage import FileLocation
from matrixd.storage.media_cleanup import LOCAL, MediaCleanupStore, MediaSelection
from matrixd.testing.http import FakeChannel
from tests.admin.base import ADMIN, V3, AdminTestCase


class MediaCleanupTests(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.cleanup_store = MediaCleanupStore(self.hs.components.db)

    def upload(self, data: bytes) -> str:
        ch = self.req("POST", "/_matrix/media/v3/upload?filename=a.bin", data, self.user_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        uri: str = ch.json_body["content_uri"]
        return uri.rsplit("/", 1)[1]

    def path(self, media_id: str, origin: Optional[str] = None) -> str:
        return self.hs.components.media.storage.path_for(FileLocation(media_id, origin=origin))

    def local_row(self, media_id: str) -> bool:
        return self.hs.run(self.hs.components.media.store.get_local_media(media_id)) is not None

    def cache_remote(self, origin: str, media_id: str) -> None:
        comps = self.hs.components
        path = self.path(media_id, origin)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"remote")
        self.hs.run(comps.media.store.store_remote_media(
            server_name=origin, media_id=media_id, media_type="text/plain", media_length=6, upload_name=None,
            sha256="00", authenticated=True, image=None))

    def fresh_cleanup(self, batch: int) -> tuple[BackgroundJobRunner, MediaCleanup]:
        """A runner and cleanup handler as a restarted process would build them over the same database."""
        comps = self.hs.components
        runner = BackgroundJobRunner(comps.clock, comps.admin.store, pause_s=0.1)
        cleanup = MediaCleanup(server_name="test", store=self.cleanup_store, jobs=comps.admin.store,
                               storage=comps.media.storage, runner=runner, batch_size=batch)
        return runner, cleanup

    def drive(self, runner: BackgroundJobRunner) -> None:
        for _ in range(1000):
            if not runner.running_job_ids():
                return
            self.hs.advance(0.1)
        self.fail("the cleanup job never finished")

    def test_large_cleanup_runs_in_batches_while_requests_are_served(self) -> None:
        """A 250-item delete runs in several batches; other requests complete while it runs; all rows and files go."""
        room = self.create_room(self.user_tok)
        ids = [self.upload(b"x" * (20 + i % 5)) for i in range(250)]
        self.hs.advance(5)
        now = self.hs.components.clock.time_msec()
        young = self.upload(b"y" * 50)
        ch = self.req_pending("POST", f"{ADMIN}/v1/media/delete?before_ts={now}")
        served = 0
        while not ch.is_finished():
            self.assertLess(served, 100, "cleanup did not finish")
            # Between batches the server answers other requests at once.
            other = self.req("PUT", f"{V3}/rooms/{room}/send/m.room.message/t{served}",
                             {"msgtype": "m.text", "body": "still here"}, self.user_tok)
            self.assertEqual(other.code, 200, other.json_body)
            served += 1
            self.hs.advance(0.05)
        self.assertGreaterEqual(served, 3)  # 250 items at 100 per batch: several batches, requests in between
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body["total"], 250)
        self.assertEqual(sorted(ch.json_body["deleted_media"]), sorted(ids))
        for media_id in ids:
            self.assertFalse(self.local_row(media_id))
            self.assertFalse(os.path.exists(self.path(media_id)))
        self.assertTrue(self.local_row(young))
        self.assertTrue(os.path.exists(self.path(young)))
        # Answered: the job's log is dropped, its count stays with the job.
        rows = self.hs.run(self.hs.components.db.execute("log", "SELECT COUNT(*) FROM admin_media_deletions"))
        self.assertEqual(rows[0][0], 0)

    def req_pending(self, method: str, path: str) -> FakeChannel:
        ch = self.hs.request(method, path, None, access_token=self.admin_tok, await_result=False)
        self.hs.advance(0)
        return ch

    def test_resume_after_crash_between_rows_and_files(self) -> None:
        """A job whose batch forgot rows but crashed before deleting the files is finished by a new process."""
        ids = [self.upload(b"z" * 10) for _ in range(7)]
        self.hs.advance(5)
        now = self.hs.components.clock.time_msec()
        kept = self.upload(b"k" * 10)
        store = self.hs.components.admin.store
        sel = MediaSelection(LOCAL, before_ts=now)
        # The crashed process: created the job and committed one batch of rows, then died.
        self.hs.run(store.create_job("crashed", DELETE_MEDIA, None, sel.to_json(), "active"))
        self.assertEqual(self.hs.run(self.cleanup_store.delete_batch("crashed", sel, "test", 3)), 3)
        gone_rows = [m for m in ids if not self.local_row(m)]
        self.assertEqual(len(gone_rows), 3)
        for media_id in gone_rows:
            self.assertTrue(os.path.exists(self.path(media_id)))  # files still there
            # No row points at a missing file, and a forgotten item is simply unknown.
            ch = self.req("GET", f"/_matrix/client/v1/media/download/test/{media_id}", None, self.user_tok)
            self.assertEqual(ch.code, 404)
        os.remove(self.path(gone_rows[0]))  # a file already missing is no error
        runner, _cleanup = self.fresh_cleanup(batch=2)
        self.assertEqual(self.hs.run(runner.resume_unfinished()), 1)
        self.drive(runner)
        job = self.hs.run(store.get_job("crashed"))
        self.assertEqual((job.status, job.progress), ("complete", {"deleted": 7}))
        for media_id in ids:
            self.assertFalse(self.local_row(media_id))
            self.assertFalse(os.path.exists(self.path(media_id)))
        self.assertTrue(self.local_row(kept))
        deleted = self.hs.run(self.cleanup_store.deleted_media("crashed"))
        self.assertEqual(sorted(m for _, m in deleted), sorted(ids))
        self.assertEqual(self.hs.run(self.cleanup_store.files_to_delete("crashed", 100)), [])

    def test_keep_profiles_size_and_protection(self) -> None:
        """keep_profiles keeps avatars (and false deletes them); size_gt and protection are honoured."""
        avatar = self.upload(b"a" * 100)
        ch = self.req("PUT", f"{V3}/profile/{self.user_id}/avatar_url", {"avatar_url": f"mxc://test/{avatar}"},
                      self.user_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        small = self.upload(b"s")
        big = self.upload(b"b" * 100)
        protected = self.upload(b"p" * 100)
        self.admin("POST", f"/v1/media/protect/{protected}", {})
        self.hs.advance(5)
        now = self.hs.components.clock.time_msec()
        self.assertEqual(self.admin("POST", f"/v1/media/delete?before_ts={now}&size_gt=50"),
                         {"deleted_media": [big], "total": 1})
        body = self.admin("POST", f"/v1/media/test/delete?before_ts={now}&keep_profiles=false")
        self.assertEqual(sorted(body["deleted_media"]), sorted([avatar, small]))
        self.assertTrue(self.local_row(protected))

    def test_purge_remote_cache_deletes_files(self) -> None:
        """purge_media_cache deletes cached remote rows and files fetched before before_ts, not later ones."""
        for i in range(5):
            self.cache_remote("other.example", f"old{i}")
        self.hs.advance(5)
        now = self.hs.components.clock.time_msec()
        self.cache_remote("other.example", "fresh")
        self.assertEqual(self.admin("POST", f"/v1/purge_media_cache?before_ts={now}"), {"deleted": 5})
        media = self.hs.components.media.store
        for i in range(5):
            self.assertIsNone(self.hs.run(media.get_remote_media("other.example", f"old{i}")))
            self.assertFalse(os.path.exists(self.path(f"old{i}", "other.example")))
        self.assertIsNotNone(self.hs.run(media.get_remote_media("other.example", "fresh")))
        self.assertTrue(os.path.exists(self.path("fresh", "other.example")))
        self.assertEqual(self.admin("POST", f"/v1/purge_media_cache?before_ts={now}"), {"deleted": 0})

    def test_overlapping_jobs_delete_each_item_once(self) -> None:
        """Two cleanups over the same media started together list each item in exactly one answer."""
        ids = [self.upload(b"o" * 10) for _ in range(9)]
        self.hs.advance(5)
        now = self.hs.components.clock.time_msec()
        runner, cleanup = self.fresh_cleanup(batch=2)
        a = self.hs.run(cleanup.start(MediaSelection(LOCAL, before_ts=now)))
        b = self.hs.run(cleanup.start(MediaSelection(LOCAL, before_ts=now)))
        self.drive(runner)
        got_a = [m for _, m in self.hs.run(self.cleanup_store.deleted_media(a))]
        got_b = [m for _, m in self.hs.run(self.cleanup_store.deleted_media(b))]
        self.assertEqual(sorted(got_a + got_b), sorted(ids))

    def test_unknown_selection_scope_fails(self) -> None:
        """A stored job with an unknown selection scope fails clearly instead of deleting anything."""
        _runner, cleanup = self.fresh_cleanup(batch=2)
        job_id = self.hs.run(cleanup.start(MediaSelection("everything")))
        job = self.hs.run(self.hs.components.admin.store.get_job(job_id))
        self.assertEqual(job.status, "failed")
        self.assertIn("everything", job.error)
