"""The worker process: ``matrixd worker -c homeserver.yaml -c workers/sync1.yaml``.

    python -m matrixd.app.worker -c homeserver.yaml -c workers/sync1.yaml [--ready-file PATH]

The config files are merged key by key (the worker's file last); the merged
config must name a ``worker_app`` (see :mod:`matrixd.app.roles.definitions`).
Start-up mirrors the master's, in steps tests can reuse:
``build_worker(config, reactor)`` (no I/O), ``start_worker(app)``: check the
schema (workers never migrate it), build the components, connect to the
master's TCP replication and wait until every subscribed stream is positioned,
then open ``worker_listeners``; ``stop_worker(app)`` undoes it all.

A worker writes ``worker_pid_file`` and logs by ``worker_log_config`` (the
shared file's ``pid_file`` and ``log_config`` are the master's).

The ready file (``--ready-file`` or ``$MATRIXD_READY_FILE``) is written once
the listeners are up: ``{"pid", "worker_name", "worker_app", "listeners"}``.
A worker does not serve before its replica is positioned, so a process
manager waiting for the ready file never routes traffic to a worker that
would answer from nothing.  SIGTERM/SIGINT shut down cleanly (exit status 0).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # Before the imports below, which the restarted process does once (matrixd.app.optimise).
    from matrixd.app.optimise import prepare_server_process

    prepare_server_process()

import argparse  # noqa: E402
import json
import logging
import os
from typing import Any, Optional, Sequence

import attrs
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IProtocolFactory

from matrixd.metrics.process import install_process_metrics
from matrixd.api.errors import ConfigError
from matrixd.app.homeserver import READY_FILE_ENV, load_signing_key
from matrixd.app.listeners import BoundListener, ServletGroups, start_listeners
from matrixd.app.logging_setup import setup_logging
from matrixd.app.roles.worker import (
    WorkerComponents,
    build_worker_components,
    build_worker_servlet_groups,
    worker_kind,
)
from matrixd.config import RootConfig, load_config
from matrixd.http.tls import TLSClientEndpoint, default_client_context
from matrixd.storage.cache import set_cache_factors
from matrixd.util.gc_tuning import freeze_startup_objects
from matrixd.util.malloc import limit_malloc_arenas
from matrixd.replication.client import Connector
from matrixd.replication.http.client import AgentTransport
from matrixd.util.clock import Clock

logger = logging.getLogger("matrixd.app.worker")


@attrs.define
class WorkerApp:
    """Everything a worker process runs, wired once by ``build_worker``."""

    config: RootConfig
    reactor: Any
    clock: Clock
    # matrixd.storage.database.Database
    database: Any
    signing_key: Any
    connector: Connector
    transport: Optional[AgentTransport]
    components: Optional[WorkerComponents] = None
    servlet_groups: ServletGroups = attrs.field(factory=dict)
    listeners: list[BoundListener] = attrs.field(factory=list)


def tcp_connector(reactor: Any, host: str, port: int, tls: bool = False) -> Connector:
    """Connects to the master's replication listener (TLS when the master's listener uses it)."""
    endpoint: Any = HostnameEndpoint(reactor, host, port, timeout=10)
    if tls:
        endpoint = TLSClientEndpoint(endpoint, default_client_context(), host)

    def connect(factory: IProtocolFactory) -> "defer.Deferred[Any]":
        d: defer.Deferred[Any] = endpoint.connect(factory)
        return d

    return connect


def build_worker(config: RootConfig, reactor: Any) -> WorkerApp:
    """Wire a worker; no network or database I/O happens here.

    Raises:
        ConfigError: not a worker config, or one it cannot run with (SQLite, no way to reach the master).
    """
    worker_kind(config)
    if config.database.name == "sqlite3":
        raise ConfigError("database.name", "workers need PostgreSQL: several processes share one database")
    if not config.workers.worker_listeners:
        logger.warning("worker %s has no worker_listeners: it serves nothing over HTTP", config.workers.worker_name)
    from matrixd.storage.database import Database

    w = config.workers
    assert w.worker_replication_host is not None and w.worker_replication_port is not None
    main = w.main_instance()
    return WorkerApp(
        config=config, reactor=reactor, clock=Clock(reactor),
        database=Database(config.database.as_engine_config(), reactor),
        signing_key=load_signing_key(config),
        connector=tcp_connector(reactor, w.worker_replication_host, w.worker_replication_port),
        transport=AgentTransport(reactor) if main is not None else None,
    )


async def start_worker(app: WorkerApp) -> list[BoundListener]:
    """Check the schema, build the components, replicate until positioned, then listen."""
    from matrixd.storage.schema import prepare_database

    await prepare_database(app.database, allow_upgrade=False)
    app.components = await build_worker_components(
        app.config, app.reactor, app.clock, app.database, app.signing_key,
        connector=app.connector, transport=app.transport,
    )
    client = app.components.replication.client
    client.start()
    logger.info("waiting for the replication stream to position %s", ", ".join(client.streams))
    await client.ready
    if app.components.sender is not None:
        await app.components.sender.start()
    app.servlet_groups = build_worker_servlet_groups(app.config, app.components)
    app.listeners = start_listeners(app.reactor, app.config, app.servlet_groups)
    return app.listeners


async def stop_worker(app: WorkerApp) -> None:
    """Stop listening, drop the replication connection, close the database."""
    for listener in app.listeners:
        stopped = listener.listening_port.stopListening()
        if stopped is not None:
            await stopped
    app.listeners = []
    if app.components is not None:
        if app.components.sender is not None:
            app.components.sender.stop()
        app.components.replication.client.stop()
        if app.components.federation is not None:
            await app.components.federation.agent.close()
    if app.transport is not None:
        await app.transport.close()
    app.database.close()


def write_ready_file(path: str, config: RootConfig, listeners: Sequence[BoundListener]) -> None:
    """Atomically write the worker's pid, name, kind and bound listeners as JSON to ``path``."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({
            "pid": os.getpid(),
            "worker_name": config.workers.worker_name,
            "worker_app": config.workers.worker_app,
            "listeners": [b.describe() for b in listeners],
        }, f)
    os.replace(tmp, path)


def parse_args(argv: Optional[Sequence[str]], prog: str = "matrixd worker") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description="Run a matrixd worker process.")
    parser.add_argument(
        "-c", "--config-path", action="append", required=True,
        help="a config file or directory; repeat it: the shared homeserver.yaml, then the worker's own file",
    )
    parser.add_argument(
        "--ready-file", default=os.environ.get(READY_FILE_ENV),
        help=f"write the bound listeners as JSON here once serving (default: ${READY_FILE_ENV})",
    )
    return parser.parse_args(argv)


def _run(config: RootConfig, ready_file: Optional[str]) -> int:
    from twisted.internet import reactor as global_reactor

    reactor: Any = global_reactor
    app = build_worker(config, reactor)
    exit_code = [0]
    pid_file = config.workers.worker_pid_file

    async def startup() -> None:
        try:
            listeners = await start_worker(app)
        except Exception:
            logger.exception("Start-up failed")
            exit_code[0] = 1
            reactor.stop()
            return
        freeze_startup_objects()  # full collections skip what start-up made (util/gc_tuning.py)
        if pid_file:
            with open(pid_file, "w", encoding="utf-8") as f:
                f.write(f"{os.getpid()}\n")
        if ready_file:
            write_ready_file(ready_file, config, listeners)
        logger.info("worker %s (%s) is serving", config.workers.worker_name, config.workers.worker_app)

    async def shutdown() -> None:
        logger.info("Shutting down")
        try:
            await stop_worker(app)
        except Exception:
            logger.exception("Error while shutting down")
        if pid_file and os.path.exists(pid_file):
            os.unlink(pid_file)

    install_process_metrics(reactor)  # reactor tick and GC pause metrics (Synapse's names)
    reactor.callWhenRunning(lambda: defer.ensureDeferred(startup()))
    reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.ensureDeferred(shutdown()))
    reactor.run()
    return exit_code[0]


def main(argv: Optional[Sequence[str]] = None, prog: str = "matrixd worker") -> None:
    """Console entry point; exits 0 on clean shutdown, 1 on bad config or start-up failure."""
    args = parse_args(argv, prog)
    try:
        config = load_config(args.config_path)
        if not config.workers.is_worker:
            raise ConfigError("worker_app", "is not set: run the master with 'matrixd -c ...' instead")
        setup_logging(config.workers.worker_log_config or config.logging.log_config)
        set_cache_factors(config.caches.global_factor, config.caches.per_cache_factors)
        limit_malloc_arenas()  # before the database threads start (see matrixd.util.malloc)
        for key in config.ignored_keys:
            logger.warning("Ignoring unknown config key %r", key)
        code = _run(config, args.ready_file)
    except ConfigError as e:
        print(f"Error in configuration: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code)


if __name__ == "__main__":
    main(prog="python -m matrixd.app.worker")
