"""Fresh databases for tests, on the engine chosen by the environment.

``MATRIXD_TEST_DB=sqlite`` (the default) or ``postgres``; for PostgreSQL,
``MATRIXD_TEST_PG_DSN`` (default ``host=127.0.0.1 port=5432 user=postgres
dbname=postgres``) names a server where we may create databases.

Every test gets its own database, dropped in cleanup.  To keep that fast the
schema is applied once per process to a template (a file for SQLite, a
``CREATE DATABASE ... TEMPLATE`` source for PostgreSQL) that each test copies.
If PostgreSQL was asked for and is unreachable, the test errors: the
PostgreSQL leg must never silently pass.

Database administration here (CREATE/DROP DATABASE, file copies) blocks the
reactor briefly; that is acceptable in tests only.  The reactor is always the
caller's: storage tests pass trial's real one, in-process homeservers a memory reactor.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
from typing import Any, Optional

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from matrixd.storage.database import Database
from matrixd.storage.schema import prepare_database

ENGINE_ENV = "MATRIXD_TEST_DB"
PG_DSN_ENV = "MATRIXD_TEST_PG_DSN"
DEFAULT_PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"

_counter = itertools.count(1)
_template_lock = defer.DeferredLock()
_sqlite_dir: Optional[str] = None
_sqlite_template: Optional[str] = None
_pg_template: Optional[str] = None


def selected_engine() -> str:
    """The engine tests run on: "sqlite" or "postgres" (anything else is an error)."""
    engine = os.environ.get(ENGINE_ENV, "sqlite") or "sqlite"
    if engine not in ("sqlite", "postgres"):
        raise RuntimeError(f"{ENGINE_ENV}={engine!r}: expected 'sqlite' or 'postgres'")
    return engine


def make_test_database(
    testcase: TestCase, reactor: Any, *, prepare: bool = True, inline: bool = False
) -> "defer.Deferred[Database]":
    """A fresh Database for ``testcase``, closed and dropped in cleanup.

    With ``prepare`` (the default) it holds the full current schema; without,
    it is empty (for testing the migration runner itself).

    Transactions run on a thread pool of ``reactor`` (storage tests pass
    trial's real reactor), or with ``inline`` on the calling thread (with a
    memory reactor), so the returned Deferred, and every request of an
    in-process test homeserver, completes synchronously.
    """
    return defer.ensureDeferred(_make(testcase, reactor, prepare, inline))


def make_test_database_sync(testcase: TestCase, reactor: Any) -> Database:
    """The inline variant of :func:`make_test_database`, returned directly."""
    d = make_test_database(testcase, reactor, inline=True)
    result: list[Database] = []
    failures: list[Any] = []
    d.addCallbacks(result.append, failures.append)
    if failures:
        failures[0].raiseException()
    assert result, "inline test database creation did not complete synchronously"
    return result[0]


async def _make(testcase: TestCase, reactor: Any, prepare: bool, inline: bool) -> Database:
    if selected_engine() == "postgres":
        return await _make_postgres(testcase, reactor, prepare, inline)
    return await _make_sqlite(testcase, reactor, prepare, inline)


# -- SQLite ---------------------------------------------------------------------


def _sqlite_tmpdir() -> str:
    global _sqlite_dir
    if _sqlite_dir is None:
        _sqlite_dir = tempfile.mkdtemp(prefix="matrixd-test-db-")
        atexit.register(shutil.rmtree, _sqlite_dir, True)
    return _sqlite_dir


async def _make_sqlite(testcase: TestCase, reactor: Any, prepare: bool, inline: bool) -> Database:
    global _sqlite_template
    path = os.path.join(_sqlite_tmpdir(), f"test-{next(_counter)}.db")
    if prepare:
        async with _template_lock:
            if _sqlite_template is None:
                template = os.path.join(_sqlite_tmpdir(), "template.db")
                tdb = Database({"name": "sqlite3", "args": {"database": template}}, reactor, metrics=None,
                               inline=inline)
                try:
                    await prepare_database(tdb)
                finally:
                    tdb.close()
                _sqlite_template = template
        shutil.copyfile(_sqlite_template, path)

    db = Database({"name": "sqlite3", "args": {"database": path}}, reactor, inline=inline)

    def _cleanup() -> None:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(path + suffix)
            except FileNotFoundError:
                pass

    testcase.addCleanup(_cleanup)
    if prepare:
        await prepare_database(db)
    return db


# -- PostgreSQL -----------------------------------------------------------------


def _pg_params() -> dict[str, Any]:
    import psycopg2.extensions

    dsn = os.environ.get(PG_DSN_ENV) or DEFAULT_PG_DSN
    params: dict[str, Any] = dict(psycopg2.extensions.parse_dsn(dsn))
    params.setdefault("connect_timeout", 10)
    return params


def _pg_admin(statement: str) -> None:
    """Run one statement on the admin database in autocommit mode (CREATE/DROP DATABASE)."""
    import psycopg2

    params = _pg_params()
    try:
        conn = psycopg2.connect(**params)
    except psycopg2.OperationalError as e:
        raise RuntimeError(
            f"{ENGINE_ENV}=postgres but PostgreSQL is unreachable with {PG_DSN_ENV}="
            f"{os.environ.get(PG_DSN_ENV) or DEFAULT_PG_DSN!r}: {e}"
        ) from e
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def _drop_stale_pg_databases() -> None:
    """Drop test databases left behind by test processes that no longer exist."""
    import psycopg2

    conn = psycopg2.connect(**_pg_params())
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'matrixd\\_t%'")
            names = [r[0] for r in cur.fetchall()]
            for name in names:
                parts = name.split("_")
                if len(parts) < 3 or not parts[2].isdigit() or _pid_alive(int(parts[2])):
                    continue
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pg_engine_config(dbname: str) -> dict[str, Any]:
    args = _pg_params()
    args.pop("connect_timeout", None)
    args["dbname"] = dbname
    args.update(cp_min=1, cp_max=3)
    return {"name": "psycopg2", "args": args}


def _drop_pg_template(name: str) -> None:
    try:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception:  # pragma: no cover - best effort at interpreter exit
        pass


async def _make_postgres(testcase: TestCase, reactor: Any, prepare: bool, inline: bool) -> Database:
    global _pg_template
    pid = os.getpid()
    # C collation: byte-order sorting, the same as SQLite, so ORDER BY agrees across engines.
    create = "ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
    if prepare:
        async with _template_lock:
            if _pg_template is None:
                _pg_admin("SELECT 1")  # fail early and clearly if the server is down
                _drop_stale_pg_databases()
                template = f"matrixd_tmpl_{pid}"
                _pg_admin(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
                _pg_admin(f'CREATE DATABASE "{template}" {create} TEMPLATE template0')
                atexit.register(_drop_pg_template, template)
                tdb = Database(_pg_engine_config(template), reactor, metrics=None, inline=inline)
                try:
                    await prepare_database(tdb)
                finally:
                    tdb.close()
                _pg_template = template
    name = f"matrixd_test_{pid}_{next(_counter)}"
    if prepare:
        assert _pg_template is not None
        _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{_pg_template}"')
    else:
        _pg_admin(f'CREATE DATABASE "{name}" {create} TEMPLATE template0')

    db = Database(_pg_engine_config(name), reactor, inline=inline)

    def _cleanup() -> None:
        db.close()
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    testcase.addCleanup(_cleanup)
    if prepare:
        await prepare_database(db)
    return db
