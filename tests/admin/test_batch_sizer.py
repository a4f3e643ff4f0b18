"""BatchSizer: admin job batches sized by how long their transactions take, not by a fixed row count."""

from __future__ import annotations

from twisted.trial import unittest

from matrixd.handlers.admin.jobs import BatchSizer


class BatchSizerTests(unittest.TestCase):
    def sizer(self) -> BatchSizer:
        return BatchSizer(initial=100, minimum=20, maximum=500, target_s=0.05)

    def test_slow_batches_shrink_towards_the_target(self) -> None:
        """A batch that took four times the target moves the size halfway towards a quarter of it."""
        s = self.sizer()
        s.record(100, 0.2)  # ideal 25
        self.assertEqual(s.size, 62)
        for _ in range(10):
            s.record(s.size, s.size * 0.002)  # 2 ms an item: ideal 25
        self.assertEqual(s.size, 25)

    def test_fast_batches_grow_up_to_the_maximum(self) -> None:
        """Quick batches grow the size, never beyond the maximum (also for an instant batch)."""
        s = self.sizer()
        s.record(100, 0.01)  # ideal 500
        self.assertEqual(s.size, 300)
        s.record(300, 0.0)
        self.assertEqual(s.size, 400)
        for _ in range(10):
            s.record(s.size, 0.0001)
        self.assertEqual(s.size, 500)

    def test_never_below_the_minimum_and_empty_batches_say_nothing(self) -> None:
        """A very slow batch stops at the minimum; an empty batch leaves the size alone."""
        s = self.sizer()
        for _ in range(10):
            s.record(s.size, 10.0)
        self.assertEqual(s.size, 20)
        s.record(0, 0.0)
        self.assertEqual(s.size, 20)

    def test_bounds_are_checked(self) -> None:
        """Inconsistent bounds are refused with the values named."""
        with self.assertRaisesRegex(ValueError, "0, 1, 5"):
            BatchSizer(initial=1, minimum=0, maximum=5, target_s=0.05)
        with self.assertRaisesRegex(ValueError, "2, 9, 5"):
            BatchSizer(initial=9, minimum=2, maximum=5, target_s=0.05)
