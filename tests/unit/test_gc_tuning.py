"""Freezing start-up objects for the garbage collector."""

from __future__ import annotations

import gc

from twisted.trial import unittest

from matrixd.util.gc_tuning import freeze_startup_objects


class FreezeTestCase(unittest.TestCase):
    def test_startup_objects_frozen_and_new_ones_collected(self) -> None:
        """What exists is frozen; garbage made afterwards is still collected."""
        self.addCleanup(gc.unfreeze)
        self.assertGreater(freeze_startup_objects(), 0)
        self.assertGreater(gc.get_freeze_count(), 0)

        class Cycle:
            pass

        a, b = Cycle(), Cycle()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        del a, b
        self.assertGreaterEqual(gc.collect(), 2)
