"""Process-wide malloc tuning.

glibc gives each thread that allocates its own malloc arena (up to eight per
CPU). The database thread pool's threads allocate query results and large
strings there, and memory freed in one arena is not reused by another, so a
server's resident memory grows with the number of threads that ever ran a
query. Two arenas (the main thread's and one shared by the pool) gave a
2 MiB lower peak RSS in the client-server benchmark on PostgreSQL (95.2 and
95.6 against 97.3 and 97.6 MiB), with no change in speed beyond the noise:
the pool's threads hold the GIL for most of their work anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
from typing import Any, Optional

logger = logging.getLogger(__name__)

#: ``M_ARENA_MAX`` of glibc's ``mallopt``.
_M_ARENA_MAX = -8
#: What matrixd uses unless the operator's ``MALLOC_ARENA_MAX`` says otherwise.
DEFAULT_ARENA_MAX = 2


@functools.lru_cache(maxsize=1)
def _glibc() -> Optional[Any]:
    """The C library if it is glibc (whose malloc the functions here tune), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has it)
        libc.mallopt  # noqa: B018
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def limit_malloc_arenas(arena_max: int = DEFAULT_ARENA_MAX) -> bool:
    """Cap glibc's malloc arenas before threads start; whether the cap was set.

    Left alone when the environment sets ``MALLOC_ARENA_MAX`` (glibc has
    applied the operator's choice) or when the C library is not glibc.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(_M_ARENA_MAX, arena_max) != 1:
        logger.warning("mallopt(M_ARENA_MAX, %d) failed", arena_max)
        return False
    return True


def release_free_memory() -> bool:
    """Give the pages malloc holds free back to the system (``malloc_trim``); whether it did.

    After a burst that allocated and freed many megabytes (a large room's state
    checked and stored), glibc keeps the freed chunks: those left between live
    ones (about 4 MiB after a 2,000-member room's state) stay resident until
    trimmed, raising the process's floor for good. Takes a few milliseconds.
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return bool(libc.malloc_trim(0))
