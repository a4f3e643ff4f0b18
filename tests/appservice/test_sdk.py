"""End to end with a real bridge SDK: a mautrix-python application service (subprocess) against a
real matrixd process, on loopback."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Optional

import yaml
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from matrixd.config.generate import generate_config
from matrixd.testing.database import selected_engine
from matrixd.testing.ports import free_port
from tests.http.test_homeserver_process import REPO_ROOT, _Collect, _postgres_database

AS_TOKEN = "sdk_as_token"
HS_TOKEN = "sdk_hs_token"
HERE = os.path.dirname(os.path.abspath(__file__))


class MautrixBridgeTestCase(unittest.TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.as_port = free_port()
        reg_path = os.path.join(self.dir, "bridge.yaml")
        with open(reg_path, "w") as f:
            yaml.safe_dump({
                "id": "realbridge", "url": f"http://127.0.0.1:{self.as_port}",
                "as_token": AS_TOKEN, "hs_token": HS_TOKEN, "sender_localpart": "realbot",
                "namespaces": {"users": [{"regex": "@_real_.*:localhost", "exclusive": True}]},
                "rate_limited": False,
            }, f)
        self.config_path = os.path.join(self.dir, "homeserver.yaml")
        self.ready_file = os.path.join(self.dir, "ready.json")
        generate_config("localhost", self.config_path, os.path.join(self.dir, "data"))
        with open(self.config_path) as f:
            raw = yaml.safe_load(f)
        raw["listeners"][0]["port"] = 0
        raw["app_service_config_files"] = [reg_path]
        if selected_engine() == "postgres":
            raw["database"] = _postgres_database(self)
        with open(self.config_path, "w") as f:
            yaml.safe_dump(raw, f)
        self.procs: list[tuple[_Collect, Any]] = []

    def tearDown(self) -> "defer.Deferred[Any] | None":
        waits = []
        for proc, transport in self.procs:
            if not proc.ended.called:
                transport.signalProcess("KILL")
                waits.append(proc.ended.addBoth(lambda _: None))
        return defer.gatherResults(waits) if waits else None

    def _spawn(self, args: list[str], env: Optional[dict[str, str]] = None) -> _Collect:
        proc = _Collect()
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = REPO_ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env.update(env or {})
        transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            proc, sys.executable, [sys.executable, *args], env=full_env, path=self.dir)
        self.procs.append((proc, transport))
        return proc

    async def test_mautrix_bridge_round_trip(self) -> None:
        """mautrix pings itself, registers a puppet, creates a room, and receives its message as a transaction."""
        hs = self._spawn(["-m", "matrixd.app.homeserver", "-c", self.config_path],
                         {"MATRIXD_READY_FILE": self.ready_file})
        for _ in range(600):
            if os.path.exists(self.ready_file) or hs.ended.called:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        self.assertTrue(os.path.exists(self.ready_file), hs.output.decode(errors="replace"))
        with open(self.ready_file) as f:
            hs_url = f"http://127.0.0.1:{json.load(f)['listeners'][0]['port']}"
        bridge = self._spawn([os.path.join(HERE, "mautrix_bridge.py"), hs_url, str(self.as_port), AS_TOKEN,
                              HS_TOKEN])
        code = await bridge.ended
        output = bridge.output.decode(errors="replace")
        self.assertEqual(code, 0, output + "\n--- homeserver ---\n" + hs.output.decode(errors="replace")[-4000:])
        line = [ln for ln in output.splitlines() if ln.startswith("RESULT ")][-1]
        result = json.loads(line[len("RESULT "):])
        self.assertIsInstance(result["ping_ms"], int)
        self.assertEqual(result["whoami"], "@_real_puppet:localhost")
        self.assertIn(result["event_id"], [e["event_id"] for e in result["received"]])
