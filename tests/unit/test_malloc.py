"""The malloc arena cap applied at start-up."""

from __future__ import annotations

import os
import platform
from unittest import mock

from twisted.trial import unittest

from matrixd.util.malloc import limit_malloc_arenas, release_free_memory


class MallocArenaTestCase(unittest.TestCase):
    def test_operator_environment_wins(self) -> None:
        """With MALLOC_ARENA_MAX in the environment, glibc already applied it: nothing is changed."""
        with mock.patch.dict(os.environ, {"MALLOC_ARENA_MAX": "8"}):
            self.assertFalse(limit_malloc_arenas())

    def test_set_on_glibc_only(self) -> None:
        """The cap is set where the C library is glibc (CI's is), and reported as not set elsewhere."""
        with mock.patch.dict(os.environ, {}, clear=False):
            os.environ.pop("MALLOC_ARENA_MAX", None)
            self.assertEqual(limit_malloc_arenas(8), platform.libc_ver()[0] == "glibc")


class ReleaseFreeMemoryTestCase(unittest.TestCase):
    def test_freed_megabytes_leave_the_process(self) -> None:
        """Memory freed between live allocations stays resident until trimmed, then goes back."""
        if platform.libc_ver()[0] != "glibc":  # CI's C library is glibc
            self.assertFalse(release_free_memory())
            return

        def rss_kib() -> int:
            with open("/proc/self/status", encoding="ascii") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

        # Below the mmap threshold, so from the heap; every other one kept, pinning the gaps.
        chunks = [bytearray(60_000) for _ in range(400)]
        kept = chunks[::2]
        del chunks
        before = rss_kib()
        self.assertTrue(release_free_memory())
        self.assertLess(rss_kib(), before - 4_000)  # about 12 MiB was freed in 60 kB gaps
        self.assertEqual(len(kept), 200)
