"""The ``matrixd`` command: run a homeserver (master role) or generate its config.

    matrixd -c homeserver.yaml [-c more.yaml ...]
    matrixd --generate-config --server-name example.com --config-path homeserver.yaml --data-dir data
    matrixd worker -c homeserver.yaml -c workers/sync1.yaml      (see matrixd.app.worker)
    python -m matrixd.app.homeserver -c homeserver.yaml

Several ``-c`` files (or directories of ``*.yaml``) are merged key by key, later ones winning.

Start-up is three steps, kept apart so each role and each test can reuse them:
``build_master(config, reactor)`` wires every component with explicit
constructor arguments (no I/O), ``start_master(app)`` prepares the database and
opens the listeners, ``stop_master(app)`` undoes both. This is the only module
that imports the global reactor.

When the listeners are up, their real addresses (port 0 picks a free port) are
written as JSON to the file named by ``--ready-file`` or ``$MATRIXD_READY_FILE``,
for tests and supervisors. SIGTERM and SIGINT shut down cleanly (exit status 0).
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and "--generate-config" not in sys.argv:
    # Before the imports below, which the restarted process does once (matrixd.app.optimise).
    from matrixd.app.optimise import prepare_server_process

    prepare_server_process()

import argparse  # noqa: E402
import json
import logging
import os
from typing import Any, Optional, Sequence

import attrs
import signedjson.key
from twisted.internet import defer

from matrixd.metrics.process import install_process_metrics
from matrixd.api.errors import ConfigError
from matrixd.app.listeners import BoundListener, ServletGroups, start_listeners
from matrixd.app.logging_setup import setup_logging
from matrixd.app.optimise import reexec_optimised
from matrixd.config import RootConfig, load_config
from matrixd.storage.cache import set_cache_factors
from matrixd.util.gc_tuning import freeze_startup_objects
from matrixd.util.malloc import limit_malloc_arenas
from matrixd.config.generate import generate_config
from matrixd.app.master import MasterComponents, build_master_components, build_servlet_groups
from matrixd.util.clock import Clock

logger = logging.getLogger("matrixd.app.homeserver")

READY_FILE_ENV = "MATRIXD_READY_FILE"


@attrs.define
class MasterApp:
    """Everything the master process runs, wired once by ``build_master``."""

    config: RootConfig
    reactor: Any
    clock: Clock
    # matrixd.storage.database.Database (imported lazily; see _build_database).
    database: Any
    signing_key: Any
    # Built by start_master once the schema is ready (stores load stream positions).
    components: Optional[MasterComponents] = None
    # Servlets for each http resource name (client, federation, media, keys, ...).
    servlet_groups: ServletGroups = attrs.field(factory=dict)
    listeners: list[BoundListener] = attrs.field(factory=list)


def _build_database(config: RootConfig, reactor: Any) -> Any:
    from matrixd.storage.database import Database

    return Database(config.database.as_engine_config(), reactor)


def load_signing_key(config: RootConfig) -> Any:
    """The server's ed25519 signing key from ``signing_key_path``."""
    path = config.server.signing_key_path
    if path is None:
        raise ConfigError("signing_key_path", "is required to run a homeserver")
    try:
        with open(path, encoding="utf-8") as f:
            keys = signedjson.key.read_signing_keys(f)
    except OSError as e:
        raise ConfigError("signing_key_path", f"cannot read {path}: {e.strerror or e}") from None
    except Exception as e:  # malformed key file: signedjson raises various errors
        raise ConfigError("signing_key_path", f"{path} is not a signing key file: {e}") from None
    if not keys:
        raise ConfigError("signing_key_path", f"{path} holds no key")
    return keys[0]


def build_master(config: RootConfig, reactor: Any) -> MasterApp:
    """Wire the master role's components; no network or database I/O happens here.

    Raises:
        ConfigError: a setting needed to build a component is missing or unusable.
    """
    clock = Clock(reactor)
    signing_key = load_signing_key(config)
    database = _build_database(config, reactor)
    return MasterApp(config=config, reactor=reactor, clock=clock, database=database, signing_key=signing_key)


async def start_master(app: MasterApp) -> list[BoundListener]:
    """Bring the schema up to date, then open every listener."""
    from matrixd.storage.schema import prepare_database

    await prepare_database(app.database)
    app.components = await build_master_components(
        app.config, app.reactor, app.clock, app.database, app.signing_key
    )
    app.servlet_groups = build_servlet_groups(app.config, app.components)
    if app.components.federation_out.send_federation:
        await app.components.federation_out.start()
    app.listeners = start_listeners(
        app.reactor, app.config, app.servlet_groups, replication_factory=app.components.replication.server
    )
    return app.listeners


async def stop_master(app: MasterApp) -> None:
    """Stop accepting connections, then close the database."""
    if app.components is not None:
        app.components.federation_out.stop()
        app.components.replication.stop()
        if app.components.replication.server is not None:
            app.components.replication.server.close_all()
    for listener in app.listeners:
        stopped = listener.listening_port.stopListening()
        if stopped is not None:
            await stopped
    app.listeners = []
    if app.components is not None:
        await app.components.federation.agent.close()
        await app.components.appservice.close()
    app.database.close()


def write_ready_file(path: str, listeners: Sequence[BoundListener]) -> None:
    """Atomically write ``{"pid": ..., "listeners": [...]}`` to ``path``."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"pid": os.getpid(), "listeners": [b.describe() for b in listeners]}, f)
    os.replace(tmp, path)


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="matrixd", description="A Matrix homeserver.")
    parser.add_argument(
        "-c", "--config-path", action="append", required=True,
        help="the homeserver.yaml to run (or to write); repeat to merge several files, later ones winning",
    )
    parser.add_argument("--generate-config", action="store_true", help="write a new config file and exit")
    parser.add_argument("-H", "--server-name", help="with --generate-config: the server name")
    parser.add_argument(
        "--data-dir", "--data-directory", dest="data_dir",
        help="with --generate-config: where the database, signing key and media go"
        " (default: 'data' next to the config file)",
    )
    parser.add_argument(
        "--ready-file", default=os.environ.get(READY_FILE_ENV),
        help=f"write the bound listeners as JSON here once serving (default: ${READY_FILE_ENV})",
    )
    args = parser.parse_args(argv)
    if args.generate_config and not args.server_name:
        parser.error("--generate-config needs --server-name")
    return args


def _generate(args: argparse.Namespace) -> int:
    config_path = args.config_path[-1]
    data_dir = args.data_dir or os.path.join(os.path.dirname(os.path.abspath(config_path)), "data")
    try:
        generate_config(args.server_name, config_path, data_dir)
    except FileExistsError:
        print(f"{config_path} already exists; leaving it unchanged.")
        return 0
    except ConfigError as e:
        print(f"Cannot generate config: {e}", file=sys.stderr)
        return 1
    print(f"Wrote {config_path} (data in {os.path.abspath(data_dir)}).")
    return 0


def _run(config: RootConfig, ready_file: Optional[str]) -> int:
    from twisted.internet import reactor as global_reactor

    reactor: Any = global_reactor
    app = build_master(config, reactor)
    exit_code = [0]

    async def startup() -> None:
        try:
            listeners = await start_master(app)
        except Exception:
            logger.exception("Start-up failed")
            exit_code[0] = 1
            reactor.stop()
            return
        freeze_startup_objects()  # full collections skip what start-up made (util/gc_tuning.py)
        if config.server.pid_file:
            with open(config.server.pid_file, "w", encoding="utf-8") as f:
                f.write(f"{os.getpid()}\n")
        if ready_file:
            write_ready_file(ready_file, listeners)
        logger.info("matrixd is serving %s", config.server.server_name)

    async def shutdown() -> None:
        logger.info("Shutting down")
        try:
            await stop_master(app)
        except Exception:
            logger.exception("Error while shutting down")
        if config.server.pid_file and os.path.exists(config.server.pid_file):
            os.unlink(config.server.pid_file)

    install_process_metrics(reactor)  # reactor tick and GC pause metrics (Synapse's names)
    reactor.callWhenRunning(lambda: defer.ensureDeferred(startup()))
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.ensureDeferred(shutdown())
    )
    reactor.run()
    return exit_code[0]


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Console entry point; exits with 0 on clean shutdown, 1 on bad config or start-up failure."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if argv is None and "--generate-config" not in args_list:
        reexec_optimised()  # the console script: the command line is this process's own
    if args_list[:1] == ["worker"]:
        from matrixd.app.worker import main as worker_main

        worker_main(args_list[1:])
        return
    args = _parse_args(args_list)
    if args.generate_config:
        sys.exit(_generate(args))
    try:
        config = load_config(args.config_path)
        if config.workers.is_worker:
            raise ConfigError("worker_app", "is set: run this config with 'matrixd worker -c ...'")
        setup_logging(config.logging.log_config)
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
    main()
