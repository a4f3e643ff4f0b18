"""The workers section: which role this process runs and how processes reach each other.

Key names follow Synapse's where they mean the same thing:

``worker_app``
    absent on the master; on a worker, its role: one of ``WORKER_APPS``.
``worker_name``
    a worker's unique name (``[A-Za-z0-9][A-Za-z0-9._-]{0,63}``); required with ``worker_app``.
``worker_replication_secret``
    the shared secret that authenticates workers on the TCP replication
    stream (and, later, the internal HTTP API).  Required by the master when
    it has a ``type: replication`` listener, and by every worker.
``worker_replication_host`` / ``worker_replication_port``
    where a worker finds the master's TCP replication listener.
``instance_map``
    ``{name: {host, port, tls}}``: the internal HTTP address of each instance
    (``main`` is the master) for writes forwarded from workers.
``worker_listeners``
    a worker's listeners, in the format of ``listeners``.
``worker_pid_file`` / ``worker_log_config``
    a worker's own pid file and logging config (``pid_file`` and
    ``log_config`` belong to the master, whose file the worker shares).
``federation_sender_instances``
    the names of the ``federation_sender`` workers that send outbound
    federation; when it is non-empty the master sends none itself.

Several ``-c`` files are merged key by key (``matrixd.config.root.load_config``):
a worker runs with the shared homeserver.yaml plus its own small file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional, Sequence

import attrs

from matrixd.api.errors import ConfigError
from matrixd.config._reader import ConfigReader
from matrixd.config.listeners import ListenerConfig
from matrixd.replication.commands import is_valid_worker_name

#: The worker roles (see workers/ and matrixd/app/roles/ for what each serves and subscribes to).
WORKER_APPS = frozenset({"sync", "federation_reader", "federation_sender", "media_repository"})
#: Other spellings accepted for ``worker_app`` (Synapse's module names, short forms).
WORKER_APP_ALIASES = {
    "media": "media_repository",
    "synapse.app.media_repository": "media_repository",
    "synapse.app.federation_reader": "federation_reader",
    "synapse.app.federation_sender": "federation_sender",
}
#: The instance_map name of the master.
MAIN_INSTANCE = "main"


@attrs.frozen(slots=True)
class InstanceLocation:
    """Where an instance's internal HTTP listener is."""

    host: str
    port: int
    tls: bool = False


@attrs.frozen(slots=True)
class WorkersConfig:
    """Keys: ``worker_app``, ``worker_name``, ``worker_replication_secret``,
    ``worker_replication_host``, ``worker_replication_port``, ``instance_map``, ``worker_listeners``.
    """

    worker_app: Optional[str] = None
    worker_name: Optional[str] = None
    worker_replication_secret: Optional[str] = None
    worker_replication_host: Optional[str] = None
    worker_replication_port: Optional[int] = None
    instance_map: Mapping[str, InstanceLocation] = attrs.field(factory=dict)
    worker_listeners: tuple[ListenerConfig, ...] = ()
    federation_sender_instances: tuple[str, ...] = ()
    worker_pid_file: Optional[str] = None
    worker_log_config: Optional[str] = None

    @property
    def is_worker(self) -> bool:
        return self.worker_app is not None

    @classmethod
    def parse(cls, r: ConfigReader) -> "WorkersConfig":
        app = r.string("worker_app")
        if app is not None:
            app = WORKER_APP_ALIASES.get(app, app)
        if app is not None and app not in WORKER_APPS:
            raise ConfigError("worker_app", f"must be one of {', '.join(sorted(WORKER_APPS))}, not {app!r}")
        name = r.string("worker_name")
        if name is not None and not is_valid_worker_name(name):
            raise ConfigError("worker_name", f"{name!r} must be 1-64 of A-Z a-z 0-9 . _ - (starting alphanumeric)")
        secret = r.string("worker_replication_secret")
        if secret is not None and not secret:
            raise ConfigError("worker_replication_secret", "must not be empty")
        host = r.string("worker_replication_host")
        port: Optional[int] = None
        if r.has("worker_replication_port"):
            port = r.integer("worker_replication_port", min_value=1, max_value=65535)
        else:
            r.raw("worker_replication_port")
        if app is not None:
            if name is None:
                raise ConfigError("worker_name", "is required with worker_app")
            if name == MAIN_INSTANCE:
                raise ConfigError("worker_name", f"{MAIN_INSTANCE!r} is the master's name")
            for key, value in (("worker_replication_secret", secret), ("worker_replication_host", host),
                               ("worker_replication_port", port)):
                if value is None:
                    raise ConfigError(key, "is required with worker_app")
        elif name is not None:
            raise ConfigError("worker_name", "is only for workers: set worker_app too, or remove it")

        instances: dict[str, InstanceLocation] = {}
        raw_map = r.section("instance_map")
        for instance in sorted(raw_map.unused_keys()):
            if instance != MAIN_INSTANCE and not is_valid_worker_name(instance):
                raise ConfigError(raw_map.key(instance), "is not a valid instance name")
            entry = raw_map.section(instance)
            instances[instance] = InstanceLocation(
                host=entry.required_string("host"),
                port=entry.integer("port", required=True, min_value=1, max_value=65535),
                tls=entry.boolean("tls", False),
            )
        worker_listeners = tuple(ListenerConfig.parse(lr) for lr in r.section_list("worker_listeners"))
        for i, listener in enumerate(worker_listeners):
            if listener.type == "replication":
                raise ConfigError(f"worker_listeners[{i}].type", "only the master serves TCP replication")
        senders = r.string_list("federation_sender_instances", ())
        for i, sender in enumerate(senders):
            if not is_valid_worker_name(sender) or sender == MAIN_INSTANCE:
                raise ConfigError(f"federation_sender_instances[{i}]", f"{sender!r} is not a worker name")
        if len(senders) > 1:
            # The sender's positions and catch-up state are not sharded by destination yet.
            raise ConfigError("federation_sender_instances", "lists more than one sender; only one is supported")
        if app == "federation_sender" and name not in senders:
            # Unlisted, it would send alongside the master (which sends unless a sender is listed).
            raise ConfigError("federation_sender_instances", f"does not list this federation sender {name!r}")
        return cls(
            worker_app=app, worker_name=name, worker_replication_secret=secret, worker_replication_host=host,
            worker_replication_port=port, instance_map=instances, worker_listeners=worker_listeners,
            federation_sender_instances=tuple(senders), worker_pid_file=r.string("worker_pid_file"),
            worker_log_config=r.string("worker_log_config"),
        )

    @property
    def master_sends_federation(self) -> bool:
        """Outbound federation leaves from the master unless federation senders are configured."""
        return not self.federation_sender_instances

    def main_instance(self) -> Optional[InstanceLocation]:
        """Where the master's internal HTTP (``replication`` resource) listens, if configured."""
        return self.instance_map.get(MAIN_INSTANCE)

    def check_listeners(self, listeners: Sequence[ListenerConfig]) -> None:
        """A replication listener needs the secret: an unauthenticated one is never allowed."""
        for i, listener in enumerate(listeners):
            if listener.type == "replication" and self.worker_replication_secret is None:
                raise ConfigError(
                    "worker_replication_secret", f"is required because listeners[{i}] has type: replication"
                )
