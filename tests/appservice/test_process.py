"""A real matrixd process pushing to a real application service on loopback.

The process boundary and real sockets are the point: the HTTP client
(``AgentTransport``) must reach a loopback URL, sign requests with the
hs_token, and retry a refused transaction.  Real time, bounded waits.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Optional

import treq
import yaml
from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.web import resource, server

from matrixd.config.generate import generate_config
from matrixd.testing.database import selected_engine
from tests.http.test_homeserver_process import REPO_ROOT, _Collect, _postgres_database

AS_TOKEN = "real_as_token"
HS_TOKEN = "real_hs_token"


class _FakeService(resource.Resource):
    """Records every request under /_matrix/app/v1; refuses the first ``refuse`` transactions with 500."""

    isLeaf = True

    def __init__(self, refuse: int = 0) -> None:
        super().__init__()
        self.requests: list[tuple[str, str, Optional[bytes], Any]] = []
        self.refuse = refuse

    def render(self, request: Any) -> bytes:
        body = request.content.read()
        auth = request.getHeader(b"authorization")
        self.requests.append((request.method.decode(), request.path.decode(), auth, json.loads(body or b"null")))
        request.setHeader(b"Content-Type", b"application/json")
        if b"/transactions/" in request.path and self.refuse > 0:
            self.refuse -= 1
            request.setResponseCode(500)
            return b'{"errcode": "M_UNKNOWN"}'
        return b"{}"

    def transactions(self) -> list[tuple[str, str, Optional[bytes], Any]]:
        return [r for r in self.requests if "/transactions/" in r[1]]


class RealAppServiceTestCase(unittest.TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.service = _FakeService(refuse=1)
        self.port = reactor.listenTCP(0, server.Site(self.service), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(self.port.stopListening)
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        reg_path = os.path.join(self.dir, "bridge.yaml")
        with open(reg_path, "w") as f:
            yaml.safe_dump({
                "id": "realbridge", "url": f"http://127.0.0.1:{self.port.getHost().port}",
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
        self.proc: Optional[_Collect] = None

    def tearDown(self) -> "defer.Deferred[None] | None":
        proc = self.proc
        if proc is None or proc.ended.called:
            return None
        self.transport.signalProcess("KILL")
        d: defer.Deferred[None] = proc.ended.addBoth(lambda _: None)
        return d

    async def _start(self) -> str:
        env = dict(os.environ)
        env["MATRIXD_READY_FILE"] = self.ready_file
        env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = _Collect()
        self.transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            self.proc, sys.executable, [sys.executable, "-m", "matrixd.app.homeserver", "-c", self.config_path],
            env=env, path=self.dir,
        )
        for _ in range(600):
            if os.path.exists(self.ready_file):
                with open(self.ready_file) as f:
                    ready = json.load(f)
                return f"http://127.0.0.1:{ready['listeners'][0]['port']}"
            if self.proc.ended.called:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        assert self.proc is not None
        self.fail(f"homeserver did not become ready:\n{self.proc.output.decode(errors='replace')}")

    async def _call(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        response = await treq.request(method, url, json=body, persistent=False,
                                      headers={"Authorization": f"Bearer {AS_TOKEN}"})
        return response.code, await response.json()

    async def test_transaction_reaches_loopback_service(self) -> None:
        """A message sent by the bridge's bot reaches the service as a transaction, after one refusal; ping works."""
        base = await self._start()
        code, body = await self._call("GET", f"{base}/_matrix/client/v3/account/whoami")
        self.assertEqual((code, body["user_id"]), (200, "@realbot:localhost"))
        code, body = await self._call("POST", f"{base}/_matrix/client/v3/createRoom", {})
        self.assertEqual(code, 200, body)
        room = body["room_id"]
        code, body = await self._call("PUT", f"{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/t1",
                                      {"msgtype": "m.text", "body": "over the wire"})
        self.assertEqual(code, 200, body)
        event_id = body["event_id"]
        for _ in range(200):
            delivered = [e["event_id"] for _m, _p, _a, b in self.service.transactions() for e in b["events"]]
            if event_id in delivered:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        txns = self.service.transactions()
        self.assertIn(event_id, [e["event_id"] for _m, _p, _a, b in txns for e in b["events"]])
        self.assertEqual(txns[0][1], txns[1][1], "the refused transaction is retried with the same id")
        self.assertTrue(all(t[0] == "PUT" and t[2] == f"Bearer {HS_TOKEN}".encode() for t in txns))

        code, body = await self._call("POST", f"{base}/_matrix/client/v1/appservice/realbridge/ping",
                                      {"transaction_id": "ping-1"})
        self.assertEqual(code, 200, body)
        self.assertIn("duration_ms", body)
        self.assertIn(("POST", "/_matrix/app/v1/ping", f"Bearer {HS_TOKEN}".encode(), {"transaction_id": "ping-1"}),
                      self.service.requests)

        assert self.proc is not None
        self.transport.signalProcess("TERM")
        exit_code = await self.proc.ended
        self.assertEqual(exit_code, 0, self.proc.output.decode(errors="replace"))

    async def test_ping_unreachable_service(self) -> None:
        """With the service gone, ping answers 502 M_CONNECTION_FAILED."""
        await self.port.stopListening()
        base = await self._start()
        code, body = await self._call("POST", f"{base}/_matrix/client/v1/appservice/realbridge/ping", {})
        self.assertEqual((code, body["errcode"]), (502, "M_CONNECTION_FAILED"))
