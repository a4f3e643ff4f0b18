"""/sync and /messages latency of a real matrixd process while a 50,000-event room's history is purged.

The room is built before the server starts, by ``matrixd.testing.bulk_room`` in
its own process: every event goes through the room core's send path (built,
auth-checked, group-committed), so the purge meets real data, only faster than
over HTTP.  The server then runs as a separate process (SQLite, or a fresh
PostgreSQL database on the PostgreSQL leg) and is driven over loopback HTTP.

A second user, in another room, polls ``/sync?timeout=0`` and ``/messages``
before and while the purge runs; the latencies are printed, not asserted (the
machine is shared).  What is asserted is correctness: the purge completes,
exactly the messages before the purge point are gone, the later ones and the
other room are untouched, and every probe was answered with 200.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import sys
import time
from typing import Any, Optional

import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from matrixd.testing.process import REPO_ROOT, ServerProcess, start_matrixd_for_test

MESSAGES = 50_000
TAIL = 100  # messages from the purge point on (kept)
BASELINE_ROUNDS = 40
POLL_S = 0.05
V3 = "/_matrix/client/v3"
ADMIN = "/_synapse/admin/v1"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _summary(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"median {statistics.median(ms):.1f} ms, p95 {_percentile(ms, 0.95):.1f} ms, max {max(ms):.1f} ms "
            f"(n={len(ms)})")


class PurgeLargeRoomTests(unittest.TestCase):
    timeout = 900

    def setUp(self) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 4
        self.addCleanup(self.pool.closeCachedConnections)
        self.probe_codes: list[int] = []

    async def _request(self, method: str, path: str, token: Optional[str] = None,
                       body: Optional[dict[str, Any]] = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kwargs: dict[str, Any] = {"headers": headers, "pool": self.pool}
        if body is not None:
            kwargs["json"] = body
        response = await treq.request(method, self.base + path, **kwargs)
        content = await response.content()
        return response.code, json.loads(content) if content else None

    async def _timed(self, path: str, token: str) -> float:
        start = time.perf_counter()
        code, body = await self._request("GET", path, token)
        elapsed = time.perf_counter() - start
        self.probe_codes.append(code)
        self.assertEqual(code, 200, body)
        return elapsed

    async def _login(self, user: str, password: str) -> str:
        code, body = await self._request("POST", f"{V3}/login", body={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password})
        self.assertEqual(code, 200, body)
        token: str = body["access_token"]
        return token

    async def _all_messages(self, room: str, token: str) -> list[dict[str, Any]]:
        """Every event ``/messages`` gives, newest first, paginating back to the start of the room."""
        events: list[dict[str, Any]] = []
        frm = ""
        for _ in range(1000):
            code, body = await self._request("GET", f"{V3}/rooms/{room}/messages?dir=b&limit=500{frm}", token)
            self.assertEqual(code, 200, body)
            events.extend(body["chunk"])
            if not body["chunk"] or "end" not in body:
                return events
            frm = f"&from={body['end']}"
        self.fail("/messages never reached the start of the room")

    def _count_events(self, proc: ServerProcess, room: str) -> int:
        """Rows in ``events`` for the room, read straight from the server's database."""
        sql = "SELECT COUNT(*) FROM events WHERE room_id = "
        if proc.database is not None:
            import psycopg2

            conn = psycopg2.connect(**proc.database.connect_args())
            try:
                with conn.cursor() as cur:
                    cur.execute(sql + "%s", (room,))
                    row = cur.fetchone()
            finally:
                conn.close()
        else:
            db = sqlite3.connect(f"file:{os.path.join(proc.directory, 'data', 'homeserver.db')}?mode=ro", uri=True)
            try:
                row = db.execute(sql + "?", (room,)).fetchone()
            finally:
                db.close()
        assert row is not None
        return int(row[0])

    async def test_sync_latency_during_purge_of_50k_event_room(self) -> None:
        """A 50,000-message room's history is purged through the admin API while another user's /sync and
        /messages keep answering; latencies before and during are printed, correctness is asserted."""
        fixture: dict[str, Any] = {}
        build_seconds: list[float] = []

        async def fill(config_path: str) -> None:
            out = os.path.join(os.path.dirname(config_path), "bulk_room.json")
            env = dict(os.environ)
            env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            start = time.monotonic()
            stdout, stderr, code = await getProcessOutputAndValue(
                sys.executable, ["-m", "matrixd.testing.bulk_room", "-c", config_path, "--messages", str(MESSAGES),
                                 "--tail", str(TAIL), "--out", out],
                env=env, path=os.path.dirname(config_path), reactor=reactor)
            build_seconds.append(time.monotonic() - start)
            self.assertEqual(code, 0, (stdout + stderr).decode(errors="replace")[-4000:])
            with open(out, encoding="utf-8") as f:
                fixture.update(json.load(f))

        proc = await start_matrixd_for_test(self, reactor, config_overrides={"bcrypt_rounds": 4}, prepare=fill,
                                            timeout=120)
        self.base = proc.base_url
        big, small, password = fixture["big_room"], fixture["small_room"], fixture["password"]
        purge_index = fixture["purge_index"]
        admin = await self._login("root", password)
        dave = await self._login("dave", password)  # in the small room only
        alice = await self._login("alice", password)  # in the big room

        small_before = [e["event_id"] for e in await self._all_messages(small, dave)]
        events_before = self._count_events(proc, big)
        probes = [f"{V3}/sync?timeout=0", f"{V3}/rooms/{small}/messages?dir=b&limit=20"]
        baseline: dict[str, list[float]] = {p: [] for p in probes}
        for _ in range(BASELINE_ROUNDS):
            for p in probes:
                baseline[p].append(await self._timed(p, dave))
            await deferLater(reactor, POLL_S, lambda: None)

        cpu_before = proc.cpu_seconds()
        started = time.perf_counter()
        code, body = await self._request("POST", f"{ADMIN}/purge_history/{big}", admin, {
            "delete_local_events": True, "purge_up_to_event_id": fixture["purge_point"]})
        self.assertEqual(code, 200, body)
        purge_id = body["purge_id"]
        during: dict[str, list[float]] = {p: [] for p in probes}
        status = "active"
        while status not in ("complete", "failed"):
            for p in probes:
                during[p].append(await self._timed(p, dave))
            code, body = await self._request("GET", f"{ADMIN}/purge_history_status/{purge_id}", admin)
            self.assertEqual(code, 200, body)
            status = body["status"]
            if status not in ("complete", "failed"):
                await deferLater(reactor, POLL_S, lambda: None)
            self.assertLess(time.perf_counter() - started, 600, "the purge did not finish in 10 minutes")
        wall = time.perf_counter() - started
        cpu_after = proc.cpu_seconds()
        self.assertEqual(body, {"status": "complete"})

        # Exactly the messages before the purge point went; everything else is still there.
        purged = events_before - self._count_events(proc, big)
        self.assertEqual(purged, purge_index)
        remaining = await self._all_messages(big, alice)
        numbers = [int(e["content"]["body"].split()[1]) for e in reversed(remaining) if e["type"] == "m.room.message"]
        self.assertEqual(numbers, fixture["kept"])
        self.assertIn(fixture["last_message"], [e["event_id"] for e in remaining])
        self.assertIn("m.room.create", [e["type"] for e in remaining])  # state events are kept
        self.assertEqual([e["event_id"] for e in await self._all_messages(small, dave)], small_before)
        code, body = await self._request("GET", f"{V3}/sync?timeout=0", alice)
        self.assertEqual(code, 200, body)
        self.assertIn(big, body["rooms"]["join"])
        self.assertTrue(all(c == 200 for c in self.probe_codes))
        self.assertGreater(len(during[probes[0]]), 0)

        engine = "postgres" if proc.database is not None else "sqlite"
        cpu = f"{cpu_after - cpu_before:.1f}s server CPU" if cpu_before is not None and cpu_after is not None else ""
        sys.stdout.write(
            f"\n[purge 50k, {engine}] room of {events_before} events built in {build_seconds[0]:.1f}s; "
            f"purged {purged} events in {wall:.1f}s wall ({cpu})\n"
            f"  /sync?timeout=0  baseline {_summary(baseline[probes[0]])}\n"
            f"                   during   {_summary(during[probes[0]])}\n"
            f"  /messages        baseline {_summary(baseline[probes[1]])}\n"
            f"                   during   {_summary(during[probes[1]])}\n")
