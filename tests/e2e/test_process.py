"""matrixd.testing.process: the real-process launcher used by the e2e tests and the benchmark."""

from __future__ import annotations

import os

import treq
from twisted.internet import reactor
from twisted.trial import unittest

from matrixd.testing.database import selected_engine
from matrixd.testing.process import read_memory_kib, start_matrixd_for_test


def _pg_database_exists(name: str) -> bool:
    import psycopg2

    from matrixd.testing.process import _pg_admin_params

    conn = psycopg2.connect(**_pg_admin_params(None), dbname="postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cur.fetchone() is not None
    finally:
        conn.close()


def _collation(name: str) -> tuple[str, str, str]:
    import psycopg2

    from matrixd.testing.process import _pg_admin_params

    conn = psycopg2.connect(**_pg_admin_params(None), dbname="postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datcollate, datctype, pg_encoding_to_char(encoding) FROM pg_database"
                        " WHERE datname = %s", (name,))
            row = cur.fetchone()
            assert row is not None
            return (row[0], row[1], row[2])
    finally:
        conn.close()


class ProcessLauncherTestCase(unittest.TestCase):
    timeout = 120

    async def test_started_server_serves_and_stop_cleans_up(self) -> None:
        """The process serves on its ready-file port; stop() exits 0 and drops its C-collated PostgreSQL database."""
        proc = await start_matrixd_for_test(self, reactor)
        self.assertTrue(proc.base_url.startswith("http://127.0.0.1:"))
        self.assertEqual(proc.ready["pid"], proc.pid)
        response = await treq.get(proc.base_url + "/_matrix/client/versions", persistent=False)
        self.assertEqual(response.code, 200)
        self.assertIn("versions", await response.json())
        memory = proc.memory_kib()
        self.assertGreater(memory["VmHWM"], 0)
        self.assertGreaterEqual(memory["VmHWM"], memory["VmRSS"])

        database = proc.database
        self.assertEqual(database is not None, selected_engine() == "postgres")
        if database is not None:
            self.assertEqual(_collation(database.name), ("C", "C", "UTF8"))
        self.assertEqual(proc.stop(), 0, proc.log_tail())
        self.assertFalse(proc.is_running())
        self.assertEqual(read_memory_kib(proc.pid), {})
        if database is not None:
            self.assertFalse(_pg_database_exists(database.name))
        else:
            self.assertTrue(os.path.exists(os.path.join(proc.directory, "data", "homeserver.db")))
        self.assertEqual(proc.stop(), 0)  # idempotent

    async def test_failed_start_raises_with_the_log_and_leaves_nothing(self) -> None:
        """A server that cannot start raises RuntimeError carrying its log, with the process reaped."""
        with self.assertRaises(RuntimeError) as cm:
            await start_matrixd_for_test(self, reactor, config_overrides={"max_upload_size": "lots"})
        self.assertIn("max_upload_size", str(cm.exception))
