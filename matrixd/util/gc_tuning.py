"""Garbage-collector tuning for long-running server processes.

Python's full (generation 2) collections walk every tracked container, and
most of a server's containers are made once at start-up: modules, classes,
functions, config, routes, the caches' own structures. Moving those to the
permanent generation once the process is serving (``gc.freeze``) leaves the
full collections only what requests created, which shortens the pauses that
land in the middle of a request (a remote join, a woken /sync).
"""

from __future__ import annotations

import gc
import linecache
import logging
import time

logger = logging.getLogger(__name__)


def freeze_startup_objects() -> int:
    """Collect start-up garbage, then exempt what is left from later collections;
    returns how many objects were frozen."""
    started = time.monotonic()
    drop_generated_source()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("froze %d start-up objects for the garbage collector in %.0f ms", frozen,
                (time.monotonic() - started) * 1000)
    return frozen


def drop_generated_source() -> int:
    """Forget the source text attrs keeps in ``linecache`` for every method it generates
    (about 1 MiB for our classes); returns how many entries went.

    It only serves tracebacks through those methods (``__init__``, ``__eq__``...), which
    then show no source line. Freed before the freeze, the memory is reused by requests.
    """
    generated = [name for name in linecache.cache if name.startswith("<attrs generated")]
    for name in generated:
        del linecache.cache[name]
    return len(generated)
