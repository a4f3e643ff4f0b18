"""The logging section."""

from __future__ import annotations

import os
from typing import Optional

import attrs

from matrixd.api.errors import ConfigError
from matrixd.config._reader import ConfigReader


@attrs.frozen(slots=True)
class LoggingConfig:
    """Key: ``log_config``, a YAML file in ``logging.config.dictConfig`` form.

    Without it matrixd logs to stderr at INFO.
    """

    log_config: Optional[str] = None

    @classmethod
    def parse(cls, r: ConfigReader) -> "LoggingConfig":
        path = r.string("log_config")
        if path is not None and not os.path.isfile(path):
            raise ConfigError("log_config", f"file {path!r} does not exist")
        return cls(log_config=path)
