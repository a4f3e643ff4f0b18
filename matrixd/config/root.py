"""The whole configuration: one frozen attrs class per section, composed here.

Adding a section is one class with a ``parse(reader) -> Self`` classmethod (see
``matrixd.config.server`` for the pattern) and one field on ``RootConfig``.
Sections read top-level keys (the file is flat, like Synapse's homeserver.yaml),
so a section picks its own key names; checks spanning sections go in
``RootConfig._check``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import yaml

from matrixd.api.errors import ConfigError
from matrixd.config._reader import ConfigReader
from matrixd.config.appservice import AppServiceConfig
from matrixd.config.database import DatabaseConfig
from matrixd.config.federation import FederationConfig
from matrixd.config.listeners import ListenersConfig
from matrixd.config.logs import LoggingConfig
from matrixd.config.media import MediaConfig
from matrixd.config.metrics import MetricsConfig
from matrixd.config.presence import PresenceConfig
from matrixd.config.ratelimiting import RatelimitConfig
from matrixd.config.registration import RegistrationConfig
from matrixd.config.server import ServerConfig
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
        for i, listener in enumerate(self.listeners.listeners):
            serves_metrics = listener.type == "metrics" or "metrics" in listener.resource_names
            if serves_metrics and not self.metrics.enable_metrics:
                raise ConfigError("enable_metrics", f"must be true for listeners[{i}] to serve metrics")


# attrs stores the annotations as strings (PEP 563); resolve them so parse() can
# reach each section class.
attrs.resolve_types(RootConfig)


def parse_config_dict(raw: Mapping[str, Any]) -> RootConfig:
    """A ``RootConfig`` from an already-loaded mapping (tests build these inline)."""
    return RootConfig.parse(raw)


def load_config(path: str) -> RootConfig:
    """Read and validate a YAML config file.

    Raises:
        ConfigError: the file cannot be read, is not YAML, or a key is invalid.
    """
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError("(file)", f"cannot read {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError("(file)", f"{path} is not valid YAML: {e}") from None
    if raw is None:
        raise ConfigError("(file)", f"{path} is empty")
    return RootConfig.parse(raw)
