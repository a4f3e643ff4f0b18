"""Process logging: a config file in dictConfig form, or plain stderr.

Every record gets ``request_id`` (the id of the HTTP request whose code logged
it, ``-`` outside requests) so a request's lines can be grepped together.
Twisted's own log events are routed into the standard ``logging`` tree.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Optional

import yaml
from twisted.logger import STDLibLogObserver, globalLogBeginner

from matrixd.api.errors import ConfigError
from matrixd.http.request import current_request_id

DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` from the running request's context."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        return True


def setup_logging(log_config_path: Optional[str], level: int = logging.INFO) -> None:
    """Configure the root logger once, at start-up.

    Raises:
        ConfigError: the ``log_config`` file is not a valid dictConfig YAML.
    """
    if log_config_path:
        try:
            with open(log_config_path, encoding="utf-8") as f:
                log_config = yaml.safe_load(f)
            logging.config.dictConfig(log_config)
        except (OSError, yaml.YAMLError, ValueError, TypeError, AttributeError, ImportError) as e:
            raise ConfigError("log_config", f"cannot use {log_config_path}: {e}") from None
    else:
        stderr_handler = logging.StreamHandler(sys.stderr)
        stderr_handler.setFormatter(logging.Formatter(DEFAULT_FORMAT))
        root = logging.getLogger()
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(stderr_handler)
        root.setLevel(level)
    # Handlers configured from a file may use %(request_id)s too.
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
    globalLogBeginner.beginLoggingTo(
        [STDLibLogObserver(name="twisted")], redirectStandardIO=False, discardBuffer=True
    )
