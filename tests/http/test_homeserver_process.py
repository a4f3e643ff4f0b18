"""The real ``python -m matrixd.app.homeserver`` process: starts, serves, shuts down.

The process boundary is the point here, so this runs a real subprocess on
loopback with real time: a generated config (port 0 listeners, a fresh database
on the engine selected by MATRIXD_TEST_DB), the ready file to learn the ports,
HTTP requests with treq, then SIGTERM.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import sys
from contextlib import redirect_stderr
from typing import Any, Optional

import treq
import yaml
from twisted.internet import defer, protocol, reactor, task
from twisted.trial import unittest

from twisted.internet.testing import MemoryReactorClock

from matrixd.api.errors import ConfigError
from matrixd.app.homeserver import build_master, main
from matrixd.config import parse_config_dict
from matrixd.config.generate import generate_config
from matrixd.testing.database import selected_engine

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_db_counter = itertools.count(1)


class _Collect(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value.exitCode if reason.value.exitCode is not None else -1)


def _postgres_database(testcase: unittest.TestCase) -> dict[str, Any]:
    """A fresh, empty PostgreSQL database for the process, dropped in cleanup."""
    import psycopg2
    import psycopg2.extensions

    dsn = os.environ.get("MATRIXD_TEST_PG_DSN") or "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    params: dict[str, Any] = dict(psycopg2.extensions.parse_dsn(dsn))
    name = f"matrixd_tproc_{os.getpid()}_{next(_db_counter)}"

    def admin(statement: str) -> None:
        conn = psycopg2.connect(**params)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    admin(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    testcase.addCleanup(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {"name": "psycopg2", "args": {**params, "dbname": name, "cp_min": 1, "cp_max": 3}}


class HomeserverProcessTestCase(unittest.TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.config_path = os.path.join(self.dir, "homeserver.yaml")
        self.ready_file = os.path.join(self.dir, "ready.json")
        generate_config("localhost", self.config_path, os.path.join(self.dir, "data"))
        with open(self.config_path) as f:
            raw = yaml.safe_load(f)
        raw["listeners"][0]["port"] = 0
        raw["listeners"].append({"port": 0, "bind_addresses": ["127.0.0.1"], "type": "metrics"})
        raw["enable_metrics"] = True
        if selected_engine() == "postgres":
            raw["database"] = _postgres_database(self)
        with open(self.config_path, "w") as f:
            yaml.safe_dump(raw, f)
        self.proc: Optional[_Collect] = None

    def tearDown(self) -> "defer.Deferred[None] | None":
        proc = self.proc
        if proc is None or proc.ended.called:
            return None
        self.transport.signalProcess("KILL")
        d: defer.Deferred[None] = proc.ended.addBoth(lambda _: None)
        return d

    async def start(self, **extra_env: str) -> dict[str, Any]:
        env = dict(os.environ, **extra_env)
        env["MATRIXD_READY_FILE"] = self.ready_file
        env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = _Collect()
        self.transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            self.proc,
            sys.executable,
            [sys.executable, "-m", "matrixd.app.homeserver", "-c", self.config_path],
            env=env,
            path=self.dir,
        )
        for _ in range(600):
            if os.path.exists(self.ready_file):
                with open(self.ready_file) as f:
                    ready: dict[str, Any] = json.load(f)
                return ready
            if self.proc.ended.called:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        self.fail(f"homeserver did not become ready:\n{self.proc.output.decode(errors='replace')}")

    async def test_process_serves_and_shuts_down_on_sigterm(self) -> None:
        """The real process binds port 0, serves the client API and metrics, and exits 0 on SIGTERM."""
        ready = await self.start()
        assert self.proc is not None
        self.assertEqual(ready["pid"], self.transport.pid)
        # It restarted itself under -OO in place (same pid): docstrings and asserts are not loaded.
        with open(f"/proc/{self.transport.pid}/cmdline", "rb") as f:
            self.assertEqual(f.read().split(b"\0")[1:5], [b"-OO", b"-X", b"no_debug_ranges", b"-m"])
        by_type = {listener["type"]: listener for listener in ready["listeners"]}
        http, metrics = by_type["http"], by_type["metrics"]
        self.assertNotEqual(http["port"], 0)
        self.assertIn("client", http["resources"])
        base = f"http://127.0.0.1:{http['port']}"

        response = await treq.get(f"{base}/_matrix/client/versions", persistent=False)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"Content-Type"), [b"application/json"])
        body = await response.json()
        self.assertIn("v1.11", body["versions"])

        response = await treq.get(f"{base}/_matrix/client/v3/capabilities?access_token=secret-token", persistent=False)
        self.assertEqual(response.code, 401)
        self.assertEqual((await response.json())["errcode"], "M_UNKNOWN_TOKEN")

        response = await treq.request("OPTIONS", f"{base}/_matrix/client/v3/anything", persistent=False)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"Access-Control-Allow-Origin"), [b"*"])
        await response.content()

        response = await treq.get(f"{base}/.well-known/matrix/client", persistent=False)
        self.assertEqual(await response.json(), {"m.homeserver": {"base_url": "http://127.0.0.1:8008/"}})

        response = await treq.get(f"http://127.0.0.1:{metrics['port']}/metrics", persistent=False)
        self.assertEqual(response.code, 200)
        text = (await response.content()).decode()
        self.assertIn("process_resident_memory_bytes", text)
        self.assertIn('matrixd_http_server_requests_total{code="200",method="GET",servlet="VersionsServlet"}', text)

        self.transport.signalProcess("TERM")
        exit_code = await self.proc.ended
        output = self.proc.output.decode(errors="replace")
        self.assertEqual(exit_code, 0, output)
        self.assertIn("Shutting down", output)
        self.assertIn("GET /_matrix/client/versions", output)  # access log
        self.assertNotIn("secret-token", output)
        if selected_engine() == "sqlite":
            self.assertTrue(os.path.exists(os.path.join(self.dir, "data", "homeserver.db")))

    async def test_optimisation_can_be_turned_off(self) -> None:
        """MATRIXD_PYTHON_OPTIMIZE=0 keeps the process as started."""
        ready = await self.start(MATRIXD_PYTHON_OPTIMIZE="0")
        with open(f"/proc/{ready['pid']}/cmdline", "rb") as f:
            self.assertNotIn(b"-OO", f.read().split(b"\0"))
        self.transport.signalProcess("TERM")
        assert self.proc is not None
        await self.proc.ended

    async def test_port_in_use_fails_start_with_status_1(self) -> None:
        """A listener that cannot bind makes the process exit 1 with the reason logged."""
        blocker = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(blocker.stopListening)
        with open(self.config_path) as f:
            raw = yaml.safe_load(f)
        raw["listeners"][0]["port"] = blocker.getHost().port
        with open(self.config_path, "w") as f:
            yaml.safe_dump(raw, f)
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = _Collect()
        self.transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            self.proc, sys.executable, [sys.executable, "-m", "matrixd.app.homeserver", "-c", self.config_path],
            env=env, path=self.dir,
        )
        exit_code = await self.proc.ended
        output = self.proc.output.decode(errors="replace")
        self.assertEqual(exit_code, 1, output)
        self.assertIn("Start-up failed", output)


class BadConfigExitTestCase(unittest.TestCase):
    def test_bad_config_exits_1_naming_the_key(self) -> None:
        """A bad config stops start-up with exit status 1 and a message naming the key."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("server_name: localhost\nmax_upload_size: lots\n")
        err = io.StringIO()
        with redirect_stderr(err), self.assertRaises(SystemExit) as cm:
            main(["-c", path])
        self.assertEqual(cm.exception.code, 1)
        self.assertIn("'max_upload_size'", err.getvalue())

    def test_missing_signing_key_is_a_config_error(self) -> None:
        """Wiring the master with a missing signing key file fails naming signing_key_path."""
        path = self.mktemp()
        config = parse_config_dict({"server_name": "localhost", "signing_key_path": path})
        with self.assertRaises(ConfigError) as cm:
            build_master(config, MemoryReactorClock())
        self.assertEqual(cm.exception.key, "signing_key_path")
        with self.assertRaises(ConfigError) as cm:
            build_master(parse_config_dict({"server_name": "localhost"}), MemoryReactorClock())
        self.assertEqual(cm.exception.key, "signing_key_path")
