"""In-process master + worker: the real components of both on one fake reactor and one test database.

The worker has its own database connection, stores, caches and notifier; it
reaches the master's TCP replication through ``tests.replication.harness.
FakeNetwork`` and the master's internal HTTP API through
:class:`SiteTransport` (requests parsed by the master's real site).
:meth:`WorkerPair.worker_request` pumps both until the worker answers.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from matrixd.app.listeners import build_json_resource
from matrixd.app.roles.worker import WorkerComponents, build_worker_components, build_worker_servlet_groups
from matrixd.config.root import parse_config_dict
from matrixd.config.workers import InstanceLocation
from matrixd.crypto.keys import generate_signing_key
from matrixd.http.request import MatrixSite
from matrixd.storage.database import Database
from matrixd.testing.homeserver import TEST_CONFIG, TestHomeserver, make_homeserver
from matrixd.testing.http import FakeChannel, make_request, make_site
from matrixd.util.clock import Clock
from tests.replication.harness import FakeNetwork

SECRET = "worker secret for tests"


class SiteTransport:
    """An ``InternalTransport`` that hands each request to a site on the same fake reactor."""

    def __init__(self, hs: TestHomeserver) -> None:
        self.hs = hs
        self.requests: list[tuple[str, str]] = []
        self.fail_next = 0

    def request(self, method: str, location: InstanceLocation, uri: str, headers: Mapping[str, str],
                body: Optional[bytes]) -> "defer.Deferred[tuple[int, bytes]]":
        self.requests.append((method, uri))
        if self.fail_next:
            self.fail_next -= 1
            from twisted.internet.error import ConnectionRefusedError
            return defer.fail(ConnectionRefusedError("simulated"))
        channel = make_request(self.hs.reactor, self.hs.site, method, uri, content=body, headers=dict(headers),
                               await_result=False)
        if channel.is_finished():
            return defer.succeed((channel.code, channel.result_body))
        d: defer.Deferred[Any] = channel.request.notifyFinish()
        return d.addCallback(lambda _: (channel.code, channel.result_body))


class WorkerPair:
    """A master (``hs``) and one worker of ``worker_app`` connected to it."""

    def __init__(self, testcase: TestCase, worker_app: str = "sync", worker_name: str = "worker1",
                 extra_config: Optional[Mapping[str, Any]] = None) -> None:
        self.testcase = testcase
        self.hs = make_homeserver(testcase, {"worker_replication_secret": SECRET, **(extra_config or {})})
        self.reactor = self.hs.reactor
        self.network = FakeNetwork(self.reactor)
        self.network.server_factory = self.hs.components.replication.server
        self.transport = SiteTransport(self.hs)
        raw: dict[str, Any] = {
            "server_name": self.hs.server_name, **TEST_CONFIG, **(extra_config or {}),
            "worker_app": worker_app, "worker_name": worker_name, "worker_replication_secret": SECRET,
            "worker_replication_host": "127.0.0.1", "worker_replication_port": 9093,
            "instance_map": {"main": {"host": "127.0.0.1", "port": 9094}},
        }
        self.worker_config = parse_config_dict(raw)
        self.worker_db = Database(self.hs.components.db.config, self.reactor, inline=True)
        testcase.addCleanup(self.worker_db.close)
        self.worker: WorkerComponents = testcase.successResultOf(defer.ensureDeferred(build_worker_components(
            self.worker_config, self.reactor, Clock(self.reactor), self.worker_db, generate_signing_key("w"),
            connector=self.network.connect, transport=self.transport,
        )))
        self.client = self.worker.replication.client
        self.client.start()
        testcase.addCleanup(self.client.stop)
        self.pump()
        testcase.successResultOf(self.client.ready)
        groups = build_worker_servlet_groups(self.worker_config, self.worker)
        self.site: MatrixSite = make_site(self.reactor, build_json_resource(sorted(groups), groups))

    def pump(self, rounds: int = 5) -> None:
        """Let replication and everything waiting on it run (no fake time passes beyond a tick)."""
        for _ in range(rounds):
            self.network.pump()
            self.reactor.advance(0)

    def settle(self, channel: FakeChannel, timeout: float = 10.0) -> FakeChannel:
        """Pump the network and advance time in small steps until ``channel`` has its response."""
        deadline = self.reactor.seconds() + timeout
        while not channel.is_finished():
            if self.reactor.seconds() >= deadline:
                raise AssertionError(f"no response within {timeout}s of fake time")
            self.pump(1)
            if not channel.is_finished():
                self.reactor.advance(0.05)
        self.pump()
        return channel

    def worker_request(self, method: str, path: str, content: Any = None, access_token: Optional[str] = None,
                       await_result: bool = True, headers: Optional[Mapping[str, str]] = None) -> FakeChannel:
        channel = make_request(self.reactor, self.site, method, path, content=content, access_token=access_token,
                               headers=headers, await_result=False)
        if await_result:
            self.settle(channel)
        return channel

    def master_request(self, method: str, path: str, content: Any = None,
                       access_token: Optional[str] = None) -> FakeChannel:
        channel = self.hs.request(method, path, content, access_token=access_token)
        self.pump()
        return channel
