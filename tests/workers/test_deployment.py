"""Multi-process: master + sync worker + federation reader + media worker + federation sender behind nginx.

Real processes on loopback (started by scripts/matrixdctl), a fresh PostgreSQL
database per test, nginx configured from contrib/nginx's template.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

from twisted.trial import unittest

from tests.workers.deployment import SYNC_FILTER, Deployment


class DeploymentTests(unittest.TestCase):
    timeout = 240

    def setUp(self) -> None:
        self.d = Deployment(self)
        self.d.start()

    def test_client_through_nginx(self) -> None:
        """Register and send through the master, receive through the sync worker; media via the media worker."""
        d = self.d
        _alice, token = d.register("alice")
        token = d.login("alice")
        room = d.request("POST", "/_matrix/client/v3/createRoom", {}, token).json["room_id"]
        first = d.request("GET", f"/_matrix/client/v3/sync?filter={SYNC_FILTER}", token=token)
        self.assertEqual(first.code, 200, first.body)
        sent = d.request("PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/1",
                         {"msgtype": "m.text", "body": "hello workers"}, token)
        self.assertEqual(sent.code, 200, sent.body)
        nxt = d.request("GET", f"/_matrix/client/v3/sync?timeout=10000&filter={SYNC_FILTER}"
                               f"&since={first.json['next_batch']}", token=token)
        events = nxt.json["rooms"]["join"][room]["timeline"]["events"]
        self.assertIn(sent.json["event_id"], [e["event_id"] for e in events])
        self.assertGreaterEqual(d.servlet_requests("sync1", "SyncServlet"), 2)
        self.assertEqual(d.servlet_requests("main", "SyncServlet"), 0)
