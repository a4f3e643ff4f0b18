"""The Database: transactions, retries, post-commit callbacks, helpers, on the selected engine."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from twisted.internet import defer, reactor, threads
from twisted.trial.unittest import TestCase

from matrixd.api.errors import ConfigError, NotFoundError
from matrixd.storage.database import Cursor, Database, DatabaseClosedError
from matrixd.storage.engines import create_engine
from matrixd.storage.sql import in_list_clause
from matrixd.testing.database import make_test_database


def _retryable_error(db: Database) -> Exception:
    """A genuine driver exception of the kind the engine retries."""
    if db.engine.name == "postgres":
        import psycopg2.errors

        return psycopg2.errors.SerializationFailure("could not serialize access")
    return sqlite3.OperationalError("database is locked")


class DatabaseTestCase(TestCase):
    async def setUp(self) -> None:
        self.db = await make_test_database(self, reactor, prepare=False)
        await self.db.execute("create", "CREATE TABLE kv (k TEXT NOT NULL PRIMARY KEY, v TEXT, n BIGINT)")

    async def test_commit_and_rollback(self) -> None:
        """A transaction commits when its function returns and rolls back when it raises."""
        await self.db.simple_insert("kv", {"k": "a", "v": "1", "n": 1})

        def failing(txn: Cursor) -> None:
            txn.execute("INSERT INTO kv (k, v, n) VALUES (?, ?, ?)", ("b", "2", 2))
            raise ValueError("boom")

        with self.assertRaises(ValueError):
            await self.db.run_interaction("failing", failing)
        rows = await self.db.execute("read", "SELECT k FROM kv ORDER BY k")
        self.assertEqual(rows, [("a",)])

    async def test_placeholders_and_percent_literals(self) -> None:
        """`?` placeholders work on both engines and a literal `%` survives conversion."""
        await self.db.simple_insert("kv", {"k": "100%", "v": "x%y", "n": 5})
        rows = await self.db.execute("like", "SELECT k, v FROM kv WHERE v LIKE '%\\%%' ESCAPE '\\' AND n = ?", 5)
        self.assertEqual(rows, [("100%", "x%y")])
        rows = await self.db.execute("pct", "SELECT '50%'")
        self.assertEqual(rows, [("50%",)])

    async def test_retries_transient_errors_then_succeeds(self) -> None:
        """A serialization failure / lock error re-runs the whole function from scratch."""
        attempts: list[int] = []
        err = _retryable_error(self.db)

        def flaky(txn: Cursor) -> str:
            attempts.append(1)
            txn.execute("INSERT INTO kv (k, v, n) VALUES (?, ?, ?)", ("r", str(len(attempts)), len(attempts)))
            if len(attempts) < 3:
                raise err
            return "ok"

        self.assertEqual(await self.db.run_interaction("flaky", flaky), "ok")
        self.assertEqual(len(attempts), 3)
        rows = await self.db.execute("read", "SELECT v FROM kv WHERE k = 'r'")
        self.assertEqual(rows, [("3",)])

    async def test_retries_are_bounded(self) -> None:
        """A transaction that always conflicts fails after max_retries re-runs."""
        attempts: list[int] = []
        err = _retryable_error(self.db)

        def always(txn: Cursor) -> None:
            attempts.append(1)
            raise err

        with self.assertRaises(type(err)):
            await self.db.run_interaction("always", always)
        self.assertEqual(len(attempts), 1 + 5)

    async def test_other_errors_are_not_retried(self) -> None:
        """Integrity errors are the caller's business: raised at once, no retry."""
        await self.db.simple_insert("kv", {"k": "dup", "v": "1", "n": 1})
        attempts: list[int] = []

        def dup(txn: Cursor) -> None:
            attempts.append(1)
            txn.execute("INSERT INTO kv (k, v, n) VALUES ('dup', '2', 2)")

        with self.assertRaises(self.db.engine.integrity_errors):
            await self.db.run_interaction("dup", dup)
        self.assertEqual(len(attempts), 1)

    async def test_concurrent_writer_is_survived(self) -> None:
        """A real concurrent write conflict (PostgreSQL) or lock (SQLite) does not fail the transaction."""
        await self.db.simple_insert("kv", {"k": "c", "v": "0", "n": 0})
        attempts: list[int] = []
        if self.db.engine.name == "postgres":
            # Transaction A reads the row, B updates it and commits, then A updates
            # it: under REPEATABLE READ, A fails with a serialization error and is retried.
            a_has_read = threading.Event()
            b_done = threading.Event()

            def txn_a(txn: Cursor) -> None:
                attempts.append(1)
                txn.execute("SELECT n FROM kv WHERE k = 'c'")
                txn.fetchall()
                if len(attempts) == 1:
                    a_has_read.set()
                    b_done.wait(10)
                txn.execute("UPDATE kv SET n = n + 10 WHERE k = 'c'")

            def txn_b(txn: Cursor) -> None:
                a_has_read.wait(10)
                txn.execute("UPDATE kv SET n = n + 1 WHERE k = 'c'")

            d_a = defer.ensureDeferred(self.db.run_interaction("txn_a", txn_a))
            await self.db.run_interaction("txn_b", txn_b)
            b_done.set()
            await d_a
            self.assertEqual(len(attempts), 2)
        else:
            # Another connection holds the write lock for a moment; ours waits
            # (busy timeout) and then commits.
            path = self.db.engine.database  # type: ignore[attr-defined]
            other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.addCleanup(other.close)
            other.execute("BEGIN IMMEDIATE")
            other.execute("UPDATE kv SET n = n + 1 WHERE k = 'c'")
            release = threads.deferToThread(lambda: (threading.Event().wait(0.3), other.execute("COMMIT")))

            def txn_a(txn: Cursor) -> None:
                attempts.append(1)
                txn.execute("UPDATE kv SET n = n + 10 WHERE k = 'c'")

            await self.db.run_interaction("txn_a", txn_a)
            await release
        rows = await self.db.execute("read", "SELECT n FROM kv WHERE k = 'c'")
        self.assertEqual(rows, [(11,)])

    async def test_call_after_runs_after_commit_only(self) -> None:
        """Post-commit callbacks run once after a commit, never after a rollback or a failed attempt."""
        calls: list[str] = []
        err = _retryable_error(self.db)
        attempts: list[int] = []

        def txn_ok(txn: Cursor) -> None:
            attempts.append(1)
            txn.call_after(calls.append, f"attempt-{len(attempts)}")
            if len(attempts) == 1:
                raise err

        await self.db.run_interaction("ok", txn_ok)
        self.assertEqual(calls, ["attempt-2"])

        def txn_fail(txn: Cursor) -> None:
            txn.call_after(calls.append, "never")
            raise ValueError()

        with self.assertRaises(ValueError):
            await self.db.run_interaction("fail", txn_fail)
        self.assertEqual(calls, ["attempt-2"])

    async def test_metrics_callback_sees_each_attempt(self) -> None:
        """The metrics callback gets (desc, duration, retried) per attempt."""
        seen: list[tuple[str, float, bool]] = []
        self.db._metrics = lambda desc, dur, retried: seen.append((desc, dur, retried))
        err = _retryable_error(self.db)
        attempts: list[int] = []

        def txn(t: Cursor) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise err

        await self.db.run_interaction("measured", txn)
        self.assertEqual([(d, r) for d, _, r in seen], [("measured", False), ("measured", True)])
        self.assertTrue(all(dur >= 0 for _, dur, _ in seen))

    async def test_simple_helpers(self) -> None:
        """insert/select/upsert/update/delete helpers round-trip on both engines."""
        db = self.db
        await db.simple_insert("kv", {"k": "a", "v": "1", "n": 1})
        await db.simple_insert_many("kv", ["k", "v", "n"], [("b", "2", 2), ("c", None, 3)])
        self.assertEqual(await db.simple_select_one("kv", {"k": "a"}, ["v", "n"]), {"v": "1", "n": 1})
        self.assertIsNone(await db.simple_select_one("kv", {"k": "zz"}, ["v"], allow_none=True))
        with self.assertRaises(NotFoundError):
            await db.simple_select_one("kv", {"k": "zz"}, ["v"])
        self.assertEqual(await db.simple_select_one_onecol("kv", {"k": "b"}, "n"), 2)
        self.assertEqual(await db.simple_select_list("kv", {"v": None}, ["k"]), [{"k": "c"}])
        self.assertEqual(sorted(await db.simple_select_onecol("kv", {}, "k")), ["a", "b", "c"])

        await db.simple_upsert("kv", {"k": "a"}, {"v": "updated"}, insertion_values={"n": 99})
        await db.simple_upsert("kv", {"k": "d"}, {"v": "new"}, insertion_values={"n": 4})
        self.assertEqual(await db.simple_select_one("kv", {"k": "a"}, ["v", "n"]), {"v": "updated", "n": 1})
        self.assertEqual(await db.simple_select_one("kv", {"k": "d"}, ["v", "n"]), {"v": "new", "n": 4})

        many = await db.simple_select_many("kv", "k", ["a", "d", "nope"], ["k", "n"])
        self.assertEqual(sorted((r["k"], r["n"]) for r in many), [("a", 1), ("d", 4)])
        self.assertEqual(await db.simple_update("kv", {"k": "b"}, {"n": 20}), 1)
        self.assertEqual(await db.simple_delete("kv", {"k": "c"}), 1)
        with self.assertRaises(ValueError):
            await db.simple_delete("kv", {})
        rows = await db.execute("all", "SELECT k, n FROM kv ORDER BY k")
        self.assertEqual(rows, [("a", 1), ("b", 20), ("d", 4)])

    async def test_execute_batch_and_in_list(self) -> None:
        """execute_batch inserts every row; in_list_clause selects them back, empty lists included."""

        def txn(t: Cursor) -> tuple[list[Any], list[Any]]:
            t.execute_batch("INSERT INTO kv (k, n) VALUES (?, ?)", [(f"k{i}", i) for i in range(600)])
            clause, args = in_list_clause(t.engine, "k", ["k1", "k599", "missing"])
            t.execute(f"SELECT n FROM kv WHERE {clause} ORDER BY n", args)
            found = t.fetchall()
            clause, args = in_list_clause(t.engine, "k", [])
            t.execute(f"SELECT n FROM kv WHERE {clause}", args)
            return found, t.fetchall()

        found, empty = await self.db.run_interaction("batch", txn)
        self.assertEqual(found, [(1,), (599,)])
        self.assertEqual(empty, [])
        rows = await self.db.execute("count", "SELECT COUNT(*) FROM kv")
        self.assertEqual(rows, [(600,)])

    async def test_closed_database_refuses_work(self) -> None:
        """After close(), run_interaction raises instead of hanging; close() is idempotent."""
        self.db.close()
        self.db.close()
        with self.assertRaises(DatabaseClosedError):
            await self.db.execute("x", "SELECT 1")

    def test_engine_names_and_config_errors(self) -> None:
        """Engines expose name sqlite/postgres; bad configs name the offending key."""
        self.assertEqual(create_engine({"name": "sqlite3", "args": {"database": ":memory:"}}).name, "sqlite")
        pg = create_engine({"name": "psycopg2", "args": {"dbname": "x", "cp_min": 1, "cp_max": 2}})
        self.assertEqual((pg.name, pg.min_connections, pg.max_connections), ("postgres", 1, 2))
        with self.assertRaises(ConfigError) as cm:
            create_engine({"name": "mysql"})
        self.assertEqual(cm.exception.key, "database.name")
        with self.assertRaises(ConfigError):
            create_engine({"name": "sqlite3", "args": {}})
        with self.assertRaises(ConfigError):
            create_engine({"name": "psycopg2", "args": {"cp_min": 5, "cp_max": 2}})

    async def test_reactor_is_not_blocked(self) -> None:
        """A slow transaction runs on a pool thread while the reactor keeps turning."""
        ticks: list[int] = []
        from twisted.internet import task

        loop = task.LoopingCall(lambda: ticks.append(1))
        loop.clock = reactor  # type: ignore[assignment]
        loop.start(0.01)

        def slow(txn: Cursor) -> None:
            threading.Event().wait(0.3)

        try:
            await self.db.run_interaction("slow", slow)
        finally:
            loop.stop()
        self.assertGreater(len(ticks), 5)


class TestDatabaseHelperTestCase(TestCase):
    async def test_unreachable_postgres_fails_loudly(self) -> None:
        """With MATRIXD_TEST_DB=postgres and no server, make_test_database raises (never skips)."""
        import os

        saved = {k: os.environ.get(k) for k in ("MATRIXD_TEST_DB", "MATRIXD_TEST_PG_DSN")}

        def restore() -> None:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

        self.addCleanup(restore)
        os.environ["MATRIXD_TEST_DB"] = "postgres"
        os.environ["MATRIXD_TEST_PG_DSN"] = "host=127.0.0.1 port=1 user=postgres dbname=postgres"
        with self.assertRaises(RuntimeError) as cm:
            await make_test_database(self, reactor, prepare=False)
        self.assertIn("unreachable", str(cm.exception))
