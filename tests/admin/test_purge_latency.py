"""Measures (reports, does not assert) request latency while a large room's history is purged, or many media
are deleted, in batches."""

from __future__ import annotations

import statistics
import sys
import time

from matrixd.app.background import BackgroundJobRunner
from matrixd.handlers.admin.deletion import RoomDeletionHandler
from matrixd.types import Requester
from tests.admin.base import V3, AdminTestCase

MESSAGES = 400
BATCH = 40


class _Timed(AdminTestCase):
    def timed_get(self, path: str) -> float:
        start = time.perf_counter()
        ch = self.req("GET", path, None, self.user_tok)
        elapsed = time.perf_counter() - start
        self.assertEqual(ch.code, 200, ch.json_body)
        return elapsed


class PurgeLatencyTests(_Timed):
    def test_latency_during_purge(self) -> None:
        """Requests keep working between purge batches; their latency before and during the purge is printed."""
        comps = self.hs.components
        big = self.create_room(self.user_tok, name="Big")
        small = self.create_room(self.user_tok, name="Small")
        bob = Requester(user_id=self.user_id, device_id=None, access_token_id=None)
        for i in range(MESSAGES):
            self.hs.run(comps.core.send.send_event(bob, big, "m.room.message", {"msgtype": "m.text", "body": str(i)}))
        last = self.send(self.user_tok, big, "last", "last")
        probes = [f"{V3}/rooms/{small}/messages?dir=b&limit=10", f"{V3}/sync?timeout=0"]
        baseline = [self.timed_get(p) for _ in range(10) for p in probes]

        runner = BackgroundJobRunner(comps.clock, comps.admin.store, pause_s=0.05)
        st = comps.core.stores
        handler = RoomDeletionHandler(server_name="test", store=comps.admin.store, runner=runner, rooms=st.rooms,
                                      aliases=st.aliases, events=st.events, current_state=st.current_state,
                                      membership=comps.core.membership, room_creation=comps.core.room_creation,
                                      send=comps.core.send, batch_size=BATCH)
        purge_id = self.hs.run(handler.start_purge(big, last, {"delete_local_events": True}))
        during: list[float] = []
        batches_start = time.perf_counter()
        while runner.running_job_ids():
            during.extend(self.timed_get(p) for p in probes)
            self.hs.advance(0.05)
        total = time.perf_counter() - batches_start
        self.assertEqual(self.hs.run(handler.purge_status(purge_id)), {"status": "complete"})
        job = self.hs.run(comps.admin.store.get_job(purge_id))
        self.assertEqual(job.progress["purged"], MESSAGES)
        sys.stdout.write(
            f"\n[purge latency] {MESSAGES} events in batches of up to {BATCH}, {total:.2f}s wall; request latency "
            f"baseline median {statistics.median(baseline) * 1000:.1f} ms max {max(baseline) * 1000:.1f} ms; "
            f"during purge median {statistics.median(during) * 1000:.1f} ms max {max(during) * 1000:.1f} ms "
            f"({len(during)} requests, {self.hs.components.db.name})\n")


MEDIA = 1000
MEDIA_BATCH = 100


class MediaCleanupLatencyTests(_Timed):
    def test_latency_during_media_cleanup(self) -> None:
        """A 1000-item media delete runs in batches while other requests are answered; latencies are printed."""
        comps = self.hs.components
        room = self.create_room(self.user_tok, name="Probe")
        ids = []
        for i in range(MEDIA):
            ch = self.req("POST", "/_matrix/media/v3/upload?filename=m.bin", b"m" * 64, self.user_tok)
            self.assertEqual(ch.code, 200, ch.json_body)
            ids.append(ch.json_body["content_uri"].rsplit("/", 1)[1])
        self.hs.advance(5)
        now = comps.clock.time_msec()
        probes = [f"{V3}/rooms/{room}/messages?dir=b&limit=10", f"{V3}/sync?timeout=0"]
        baseline = [self.timed_get(p) for _ in range(10) for p in probes]
        start = time.perf_counter()
        ch = self.hs.request("POST", f"/_synapse/admin/v1/media/delete?before_ts={now}", None,
                             access_token=self.admin_tok, await_result=False)
        self.hs.advance(0)
        during: list[float] = []
        steps: list[float] = []  # wall time of each reactor turn running a batch: what a request could wait
        while not ch.is_finished():
            during.extend(self.timed_get(p) for p in probes)
            step_start = time.perf_counter()
            self.hs.advance(0.05)
            steps.append(time.perf_counter() - step_start)
        total = time.perf_counter() - start
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body["total"], MEDIA)
        self.assertGreater(len(during), 2 * (MEDIA // MEDIA_BATCH))  # requests answered between the batches
        sys.stdout.write(
            f"\n[media cleanup latency] {MEDIA} items in batches of {MEDIA_BATCH}, {total:.2f}s wall; request "
            f"latency baseline median {statistics.median(baseline) * 1000:.1f} ms max {max(baseline) * 1000:.1f} "
            f"ms; during cleanup median {statistics.median(during) * 1000:.1f} ms max {max(during) * 1000:.1f} ms "
            f"({len(during)} requests); longest batch step {max(steps) * 1000:.1f} ms ({comps.db.name})\n")
