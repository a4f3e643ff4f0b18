"""The whole configuration: one frozen attrs class per section, composed here.

Adding a section is one class with a ``parse(reader) -> Self`` classmethod (see
``matrixd.config.server`` for the pattern) and one field on ``RootConfig``.
Sections read top-level keys (the file is flat, like Synapse's homeserver.yaml),
so a section picks its own key names; checks spanning sections go in
``RootConfig._check``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

import attrs
import yaml

from matrixd.api.errors import ConfigError
from matrixd.config._reader import ConfigReader
from matrixd.config.appservice import AppServiceConfig
from matrixd.config.caches import CachesConfig
from matrixd.config.database import DatabaseConfig
from matrixd.config.federation import FederationConfig
from matrixd.config.listeners import ListenerConfig, ListenersConfig
from matrixd.config.logs import LoggingConfig
from matrixd.config.media import MediaConfig
from matrixd.config.metrics import MetricsConfig
from matrixd.config.presence import PresenceConfig
from matrixd.config.ratelimiting import RatelimitConfig
from matrixd.config.registration import RegistrationConfig
from matrixd.config.server import ServerConfig
from matrixd.config.server_notices import ServerNoticesConfig
from matrixd.config.voip import VoipConfig
from matrixd.config.workers import WorkersConfig

@attrs.frozen(slots=True)
class RootConfig:
    """The parsed, validated config of one matrixd process."""

    server: ServerConfig
    listeners: ListenersConfig
    database: DatabaseConfig
    registration: RegistrationConfig
    ratelimiting: RatelimitConfig
    media: MediaConfig
    voip: VoipConfig
    metrics: MetricsConfig
    logging: LoggingConfig
    workers: WorkersConfig
    federation: FederationConfig
    presence: PresenceConfig = PresenceConfig()
    caches: CachesConfig = CachesConfig()
    server_notices: ServerNoticesConfig = attrs.field(factory=ServerNoticesConfig)
    # app_service_config_files: application service registrations (matrixd.appservice)
    app_service_config_files: AppServiceConfig = AppServiceConfig()
    # Top-level keys no section read (typos, or settings matrixd does not have).
    ignored_keys: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> "RootConfig":
        """Build from the top-level mapping of a homeserver.yaml.

        Raises:
            ConfigError: naming the first bad key.
        """
        if not isinstance(raw, Mapping):
            raise ConfigError("(file)", "the configuration must be a YAML mapping of keys to values")
        reader = ConfigReader(raw)
        sections: dict[str, Any] = {}
        for field in attrs.fields(cls):
            parse = getattr(field.type, "parse", None)
            if parse is not None:
                sections[field.name] = parse(reader)
        config = cls(**sections, ignored_keys=tuple(reader.unused_keys()))
        config._check()
        return config

    def _check(self) -> None:
        self.workers.check_listeners(self.listeners.listeners)
        for key, listeners in (("listeners", self.listeners.listeners),
                               ("worker_listeners", self.workers.worker_listeners)):
            for i, listener in enumerate(listeners):
                serves_metrics = listener.type == "metrics" or "metrics" in listener.resource_names
                if serves_metrics and not self.metrics.enable_metrics:
                    raise ConfigError("enable_metrics", f"must be true for {key}[{i}] to serve metrics")

    @property
    def process_listeners(self) -> tuple[ListenerConfig, ...]:
        """The listeners this process opens: ``worker_listeners`` on a worker, ``listeners`` on the master."""
        if self.workers.is_worker:
            return self.workers.worker_listeners
        return self.listeners.listeners


# attrs stores the annotations as strings (PEP 563); resolve them so parse() can
# reach each section class.
attrs.resolve_types(RootConfig)


def parse_config_dict(raw: Mapping[str, Any]) -> RootConfig:
    """A ``RootConfig`` from an already-loaded mapping (tests build these inline)."""
    return RootConfig.parse(raw)


def _read_yaml_mapping(path: str) -> Mapping[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError("(file)", f"cannot read {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError("(file)", f"{path} is not valid YAML: {e}") from None
    if raw is None:
        raise ConfigError("(file)", f"{path} is empty")
    if not isinstance(raw, Mapping):
        raise ConfigError("(file)", f"{path} must be a YAML mapping of keys to values")
    return raw


def config_files(paths: Sequence[str]) -> list[str]:
    """The files named by ``-c`` arguments in order; a directory stands for its ``*.yaml`` files, sorted."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            files.extend(
                os.path.join(path, name) for name in sorted(os.listdir(path))
                if name.endswith((".yaml", ".yml")) and not name.startswith(".")
            )
        else:
            files.append(path)
    return files


def merge_config_mappings(mappings: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Top-level keys of later mappings replace those of earlier ones (sections are not merged deeply).

    A worker file lists only what differs from the shared homeserver.yaml
    (``worker_app``, ``worker_name``, ``worker_listeners``, ``pid_file``...),
    which is how Synapse merges several ``-c`` files too.
    """
    merged: dict[str, Any] = {}
    for mapping in mappings:
        merged.update(mapping)
    return merged


def load_config(path: Union[str, Sequence[str]]) -> RootConfig:
    """Read and validate one YAML config file, or several merged in order (see :func:`merge_config_mappings`).

    Raises:
        ConfigError: a file cannot be read, is not a YAML mapping, or a key is invalid.
    """
    paths = [path] if isinstance(path, str) else list(path)
    files = config_files(paths)
    if not files:
        raise ConfigError("(file)", f"no config files in {', '.join(paths) or '(none given)'}")
    return RootConfig.parse(merge_config_mappings(_read_yaml_mapping(p) for p in files))
