"""The malloc arena cap applied at start-up."""

from __future__ import annotations

import os
import platform
from unittest import mock

from twisted.trial import unittest

from matrixd.util.malloc import limit_malloc_arenas


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
