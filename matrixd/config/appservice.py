"""``app_service_config_files``: the application service registrations this server loads.

Synapse's key name, so existing deployments' homeserver.yaml work unchanged.
Each file is read and validated at config load; an error names the file and key.
"""

from __future__ import annotations

import attrs
import yaml

from matrixd.api.errors import ConfigError
from matrixd.appservice.registration import AppServiceRegistration, check_unique, parse_registration
from matrixd.config._reader import ConfigReader


@attrs.frozen(slots=True)
class AppServiceConfig:
    registrations: tuple[AppServiceRegistration, ...] = ()

    @classmethod
    def parse(cls, r: ConfigReader) -> "AppServiceConfig":
        paths = r.string_list("app_service_config_files")
        registrations = []
        for i, path in enumerate(paths):
            key = f"app_service_config_files[{i}]"
            try:
                with open(path, encoding="utf-8") as f:
                    raw = yaml.safe_load(f)
            except OSError as e:
                raise ConfigError(key, f"cannot read {path}: {e.strerror or e}") from None
            except yaml.YAMLError as e:
                raise ConfigError(key, f"{path} is not valid YAML: {e}") from None
            registrations.append(parse_registration(raw, path))
        check_unique(registrations)
        return cls(tuple(registrations))
