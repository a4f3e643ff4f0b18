"""Run a real ``python -m matrixd.app.homeserver`` process on loopback, for
end-to-end tests and benchmarks, and always clean it up.

The process gets a fresh directory with a generated config: one http listener
on 127.0.0.1 port 0 (the bound port is read back from the ready file), relaxed
rate limits, a known registration shared secret, and either SQLite in that
directory or a freshly created PostgreSQL database (dropped when the process
is stopped).

Nothing here imports a reactor: waiting is done through an injected
``sleep(seconds) -> Awaitable`` so the same code serves trial tests (a
``deferLater`` on trial's reactor, see :func:`start_matrixd_for_test`) and
asyncio scripts (``asyncio.sleep``). Stopping is synchronous (SIGTERM, a short
grace period, then SIGKILL and ``wait``) so it can run from any cleanup hook.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable, Mapping, Optional

import attrs
import yaml
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from matrixd.config.generate import generate_config
from matrixd.testing.database import DEFAULT_PG_DSN, PG_DSN_ENV, selected_engine

Sleep = Callable[[float], Awaitable[Any]]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Rate limits high enough that no scripted client is ever throttled. Key names
# are Synapse's, so the same mapping serves both servers; each ignores (with a
# warning) the keys it does not know.
RELAXED_RATELIMITS: dict[str, Any] = {
    "rc_message": {"per_second": 1e6, "burst_count": 1e6},
    "rc_registration": {"per_second": 1e6, "burst_count": 1e6},
    "rc_login": {
        "address": {"per_second": 1e6, "burst_count": 1e6},
        "account": {"per_second": 1e6, "burst_count": 1e6},
        "failed_attempts": {"per_second": 1e6, "burst_count": 1e6},
    },
    "rc_joins": {
        "local": {"per_second": 1e6, "burst_count": 1e6},
        "remote": {"per_second": 1e6, "burst_count": 1e6},
    },
    "rc_joins_per_room": {"per_second": 1e6, "burst_count": 1e6},
    "rc_invites": {
        "per_room": {"per_second": 1e6, "burst_count": 1e6},
        "per_user": {"per_second": 1e6, "burst_count": 1e6},
        "per_issuer": {"per_second": 1e6, "burst_count": 1e6},
    },
    "rc_media_create": {"per_second": 1e6, "burst_count": 1e6},
    "rc_3pid_validation": {"per_second": 1e6, "burst_count": 1e6},
}

REGISTRATION_SHARED_SECRET = "matrixd-process-shared-secret"

_db_counter = itertools.count(1)


# -- PostgreSQL -----------------------------------------------------------------


@attrs.frozen
class PostgresDatabase:
    """A database we created on the test PostgreSQL server; ``drop()`` removes it."""

    name: str
    # libpq keywords for the admin connection (without dbname).
    params: Mapping[str, Any]

    def connect_args(self) -> dict[str, Any]:
        """libpq keywords (with ``dbname``) to reach this database."""
        return {**self.params, "dbname": self.name}

    def drop(self) -> None:
        _pg_admin(self.params, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _pg_admin_params(dsn: Optional[str]) -> dict[str, Any]:
    import psycopg2.extensions

    params: dict[str, Any] = dict(
        psycopg2.extensions.parse_dsn(dsn or os.environ.get(PG_DSN_ENV) or DEFAULT_PG_DSN)
    )
    params.pop("dbname", None)
    params.pop("database", None)
    return params


def _pg_admin(params: Mapping[str, Any], statement: str) -> None:
    import psycopg2

    conn = psycopg2.connect(**params, dbname="postgres", connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def create_postgres_database(prefix: str = "matrixd_tproc", dsn: Optional[str] = None) -> PostgresDatabase:
    """Create an empty UTF-8, C-collated database (what both matrixd and Synapse require).

    The name is ``<prefix>_<pid>_<n>``, so the test suite's stale-database sweep
    (``matrixd_t*`` names whose pid is gone) also removes ones a killed run left.
    """
    params = _pg_admin_params(dsn)
    name = f"{prefix}_{os.getpid()}_{next(_db_counter)}"
    _pg_admin(params, f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    return PostgresDatabase(name=name, params=params)


# -- Processes --------------------------------------------------------------------


@attrs.define
class ServerProcess:
    """A homeserver subprocess: where it listens and how to stop it.

    ``stop()`` is idempotent and also drops the PostgreSQL database the server
    used, if we created one.
    """

    popen: "subprocess.Popen[bytes]"
    directory: str
    log_path: str
    base_url: str
    server_name: str
    registration_shared_secret: str
    database: Optional[PostgresDatabase] = None
    # The ready file's content (matrixd) or {} (servers without one).
    ready: dict[str, Any] = attrs.field(factory=dict)
    _stopped: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def is_running(self) -> bool:
        return self.popen.poll() is None

    def memory_kib(self) -> dict[str, int]:
        """``VmRSS`` and ``VmHWM`` (peak RSS) of the process in KiB; {} once it has exited."""
        return read_memory_kib(self.pid)

    def cpu_seconds(self) -> Optional[float]:
        """CPU time the server has used so far (user + system, all threads)."""
        return read_cpu_seconds(self.pid)

    def log_tail(self, max_bytes: int = 8000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - max_bytes))
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self, grace_seconds: float = 10.0) -> Optional[int]:
        """SIGTERM, then SIGKILL after ``grace_seconds``; returns the exit status."""
        if self._stopped:
            return self.popen.returncode
        self._stopped = True
        try:
            if self.popen.poll() is None:
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(grace_seconds)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(30)
        finally:
            if self.database is not None:
                self.database.drop()
        return self.popen.returncode


def read_memory_kib(pid: int) -> dict[str, int]:
    """``{"VmRSS": kib, "VmHWM": kib}`` from /proc/<pid>/status ({} if it is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
    except OSError:
        return {}
    return out


def read_cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU time of the process (all its threads) from /proc/<pid>/stat; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    # After the command name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spawn_logged(argv: list[str], directory: str, log_path: str,
                 env: Optional[Mapping[str, str]] = None) -> "subprocess.Popen[bytes]":
    """Start ``argv`` in ``directory`` with stdout and stderr appended to ``log_path``.

    A file rather than a pipe, so a chatty server never blocks on a full pipe
    and its log survives for post-mortems.
    """
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(
            argv, cwd=directory, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None, start_new_session=True,
        )
    finally:
        log.close()


def write_matrixd_config(
    directory: str,
    *,
    server_name: str = "localhost",
    engine: str = "sqlite",
    database: Optional[PostgresDatabase] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    pg_pool: tuple[int, int] = (1, 5),
) -> str:
    """Generate ``<directory>/homeserver.yaml`` for a loopback test server; returns its path.

    ``engine`` is "sqlite" or "postgres"; PostgreSQL needs ``database``.
    ``overrides`` are top-level keys applied last.
    """
    if engine not in ("sqlite", "postgres"):
        raise ValueError(f"engine must be 'sqlite' or 'postgres', not {engine!r}")
    config_path = os.path.join(directory, "homeserver.yaml")
    generate_config(server_name, config_path, os.path.join(directory, "data"))
    with open(config_path, encoding="utf-8") as f:
        raw: dict[str, Any] = yaml.safe_load(f)
    raw["listeners"] = [{
        "port": 0, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False, "x_forwarded": False,
        "resources": [{"names": ["client", "federation", "media", "keys"]}],
    }]
    raw["public_baseurl"] = "http://127.0.0.1/"
    raw["registration_shared_secret"] = REGISTRATION_SHARED_SECRET
    raw.update(RELAXED_RATELIMITS)
    if engine == "postgres":
        if database is None:
            raise ValueError("engine='postgres' needs a PostgresDatabase")
        raw["database"] = {
            "name": "psycopg2",
            "args": {**database.connect_args(), "cp_min": pg_pool[0], "cp_max": pg_pool[1]},
        }
    raw.update(overrides or {})
    with open(config_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(raw, f)
    return config_path


async def start_matrixd(
    directory: str,
    sleep: Sleep,
    *,
    engine: str = "sqlite",
    server_name: str = "localhost",
    config_overrides: Optional[Mapping[str, Any]] = None,
    python: str = sys.executable,
    python_args: tuple[str, ...] = (),
    timeout: float = 60.0,
    pg_dsn: Optional[str] = None,
    pg_pool: tuple[int, int] = (1, 5),
    prepare: Optional[Callable[[str], Awaitable[Any]]] = None,
) -> ServerProcess:
    """Start matrixd in ``directory`` (created if needed) and wait until it serves.

    ``python_args`` go before ``-m`` (e.g. ``("-X", "importtime")``);
    ``pg_pool`` is the PostgreSQL connection pool (``cp_min``, ``cp_max``);
    ``prepare(config_path)`` runs once the config is written and before the
    server starts (to fill its database offline, say). On any failure the
    process is killed, the database dropped, and ``RuntimeError`` carries the
    end of the server's log.
    """
    os.makedirs(directory, exist_ok=True)
    database = create_postgres_database("matrixd_tproc", pg_dsn) if engine == "postgres" else None
    try:
        config_path = write_matrixd_config(
            directory, server_name=server_name, engine=engine, database=database, overrides=config_overrides,
            pg_pool=pg_pool,
        )
        if prepare is not None:
            await prepare(config_path)
    except BaseException:
        if database is not None:
            database.drop()
        raise
    ready_file = os.path.join(directory, "ready.json")
    log_path = os.path.join(directory, "matrixd.log")
    env = dict(os.environ)
    env["MATRIXD_READY_FILE"] = ready_file
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    popen = spawn_logged(
        [python, *python_args, "-m", "matrixd.app.homeserver", "-c", config_path], directory, log_path, env
    )
    proc = ServerProcess(
        popen=popen, directory=directory, log_path=log_path, base_url="", server_name=server_name,
        registration_shared_secret=REGISTRATION_SHARED_SECRET, database=database,
    )
    try:
        proc.ready = await _wait_for_ready_file(proc, ready_file, sleep, timeout)
        http = next(entry for entry in proc.ready["listeners"] if entry["type"] == "http")
        proc.base_url = f"http://127.0.0.1:{http['port']}"
    except BaseException:
        proc.stop(grace_seconds=2)
        raise
    return proc


async def _wait_for_ready_file(proc: ServerProcess, path: str, sleep: Sleep, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                ready: dict[str, Any] = json.load(f)
            return ready
        if not proc.is_running():
            raise RuntimeError(
                f"matrixd exited with status {proc.popen.returncode} before serving:\n{proc.log_tail()}"
            )
        await sleep(0.05)
    raise RuntimeError(f"matrixd did not write {path} within {timeout}s:\n{proc.log_tail()}")


def start_matrixd_for_test(
    testcase: TestCase, reactor: Any, **kwargs: Any
) -> "defer.Deferred[ServerProcess]":
    """:func:`start_matrixd` for a trial test: a temp directory, trial's reactor
    for waiting, the engine from ``MATRIXD_TEST_DB``, and ``stop()`` registered
    as a cleanup before the process is started (so it always runs).
    """
    directory = os.path.abspath(testcase.mktemp())
    holder: list[ServerProcess] = []

    def _cleanup() -> None:
        for proc in holder:
            proc.stop()

    testcase.addCleanup(_cleanup)

    def sleep(seconds: float) -> "defer.Deferred[None]":
        return deferLater(reactor, seconds, lambda: None)

    async def _start() -> ServerProcess:
        kwargs.setdefault("engine", selected_engine())
        proc = await start_matrixd(directory, sleep, **kwargs)
        holder.append(proc)
        return proc

    return defer.ensureDeferred(_start())
