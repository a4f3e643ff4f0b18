"""Worker and replication settings: Synapse's key names, required combinations, the replication listener."""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from matrixd.api.errors import ConfigError
from matrixd.app.listeners import start_listeners
from matrixd.config import parse_config_dict
from matrixd.config.workers import InstanceLocation
from tests.replication.harness import Master, NotesLog

BASE: dict[str, Any] = {"server_name": "example.org"}
REPLICATION_LISTENER = {"port": 9093, "bind_addresses": ["127.0.0.1"], "type": "replication"}
WORKER: dict[str, Any] = {
    "worker_app": "sync",
    "worker_name": "sync-1",
    "worker_replication_secret": "s3cret",
    "worker_replication_host": "10.0.0.1",
    "worker_replication_port": 9093,
}


class WorkersConfigTests(unittest.TestCase):
    def parse(self, **keys: Any) -> Any:
        return parse_config_dict({**BASE, **keys})

    def assertConfigError(self, key: str, **keys: Any) -> None:
        with self.assertRaises(ConfigError) as cm:
            self.parse(**keys)
        self.assertIn(key, str(cm.exception))

    def test_master_defaults(self) -> None:
        """Without worker keys the process is the master and serves no replication."""
        workers = self.parse().workers
        self.assertFalse(workers.is_worker)
        self.assertIsNone(workers.worker_replication_secret)
        self.assertEqual(dict(workers.instance_map), {})

    def test_worker_config(self) -> None:
        """A full worker config parses, including instance_map and worker_listeners."""
        config = self.parse(**WORKER, instance_map={"main": {"host": "10.0.0.1", "port": 9094}},
                            worker_listeners=[{"port": 8083, "type": "http", "resources": [{"names": ["client"]}]}])
        w = config.workers
        self.assertTrue(w.is_worker)
        self.assertEqual((w.worker_app, w.worker_name, w.worker_replication_port), ("sync", "sync-1", 9093))
        self.assertEqual(w.instance_map["main"], InstanceLocation("10.0.0.1", 9094, False))
        self.assertEqual(w.worker_listeners[0].resource_names, frozenset({"client"}))
        self.assertEqual(config.ignored_keys, ())

    def test_worker_errors(self) -> None:
        """Bad or missing worker settings are refused, naming the key."""
        self.assertConfigError("worker_app", **{**WORKER, "worker_app": "generic"})
        self.assertConfigError("worker_name", **{k: v for k, v in WORKER.items() if k != "worker_name"})
        self.assertConfigError("worker_name", **{**WORKER, "worker_name": "has space"})
        self.assertConfigError("worker_name", **{**WORKER, "worker_name": "main"})
        self.assertConfigError("worker_name", worker_name="orphan")
        for key in ("worker_replication_secret", "worker_replication_host", "worker_replication_port"):
            self.assertConfigError(key, **{k: v for k, v in WORKER.items() if k != key})
        self.assertConfigError("worker_replication_secret", **{**WORKER, "worker_replication_secret": ""})
        self.assertConfigError("worker_replication_port", **{**WORKER, "worker_replication_port": 0})
        self.assertConfigError("instance_map.main.port", instance_map={"main": {"host": "h"}})
        self.assertConfigError("instance_map", instance_map={"bad name": {"host": "h", "port": 1}})
        self.assertConfigError("worker_listeners[0].type", **WORKER, worker_listeners=[REPLICATION_LISTENER])

    def test_replication_listener_needs_the_secret(self) -> None:
        """A type: replication listener without worker_replication_secret is refused (never unauthenticated)."""
        self.assertConfigError("worker_replication_secret", listeners=[REPLICATION_LISTENER])
        config = self.parse(listeners=[REPLICATION_LISTENER], worker_replication_secret="s3cret")
        self.assertEqual(config.listeners.listeners[0].type, "replication")


class ReplicationListenerTests(unittest.TestCase):
    def test_listener_serves_the_replication_factory(self) -> None:
        """start_listeners binds a replication listener to the role's replication server factory."""
        reactor = MemoryReactorClock()
        config = parse_config_dict({**BASE, "listeners": [REPLICATION_LISTENER], "worker_replication_secret": "s"})
        master = Master(reactor, [NotesLog()], secret="s")
        bound = start_listeners(reactor, config, {}, replication_factory=master.server)
        self.assertEqual([(b.type, b.port) for b in bound], [("replication", 9093)])
        port, factory, _backlog, interface = reactor.tcpServers[0]
        self.assertEqual((port, interface), (9093, "127.0.0.1"))
        self.assertIs(factory, master.server)

    def test_listener_without_a_factory_is_a_config_error(self) -> None:
        """A role that serves no replication refuses a replication listener instead of ignoring it."""
        reactor = MemoryReactorClock()
        config = parse_config_dict({**BASE, "listeners": [REPLICATION_LISTENER], "worker_replication_secret": "s"})
        with self.assertRaises(ConfigError):
            start_listeners(reactor, config, {})
        self.assertEqual(reactor.tcpServers, [])
