"""matrixd's tests.

Some tests import Synapse in-process as a reference implementation (the
differential tests). matrixd exports several metrics under Synapse's names (so
Synapse's dashboards work), and both register them on prometheus_client's
default registry when their modules are imported, which would make the second
import fail in a test process that has both. In test processes only, metrics
created by Synapse's own modules are not registered.
"""

from __future__ import annotations

import sys
from typing import Any


def _skip_synapse_metric_registration() -> None:
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return
    register = REGISTRY.register

    def register_unless_synapse(collector: Any) -> None:
        frame = sys._getframe(1)
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if module == "synapse" or module.startswith("synapse."):
                return
            frame = frame.f_back  # type: ignore[assignment]
        register(collector)

    REGISTRY.register = register_unless_synapse  # type: ignore[method-assign]


_skip_synapse_metric_registration()
