"""The loopback port allocator the process tests and benchmarks share."""

from __future__ import annotations

import random
import socket

from twisted.trial import unittest

from matrixd.testing import ports


class _Scripted(random.Random):
    """Returns the given ports first, then behaves as a normal generator."""

    def __init__(self, script: list[int]) -> None:
        super().__init__()
        self.script = list(script)

    def randint(self, a: int, b: int) -> int:
        if self.script:
            return self.script.pop(0)
        return super().randint(a, b)


class FreePortsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.patch(ports, "_handed_out", set())

    def test_ports_are_distinct_in_range_and_bindable(self) -> None:
        got = ports.free_ports(40)
        self.assertEqual(len(set(got)), 40)
        for port in got:
            self.assertTrue(ports.LOW <= port <= ports.HIGH)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", port))

    def test_a_port_is_never_handed_out_twice(self) -> None:
        """The bug this module exists for: the same port for two listeners of one server."""
        first = ports.free_port()
        self.patch(ports, "_rng", _Scripted([first, first]))
        second = ports.free_port()
        self.assertNotEqual(first, second)

    def test_a_port_someone_listens_on_is_skipped(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            taken = busy.getsockname()[1]
            self.patch(ports, "_rng", _Scripted([taken]))
            self.assertNotEqual(ports.free_port(), taken)

    def test_exhaustion_is_reported(self) -> None:
        self.patch(ports, "LOW", 20000)
        self.patch(ports, "HIGH", 20001)
        self.patch(ports, "_handed_out", {20000, 20001})
        self.assertRaises(RuntimeError, ports.free_ports, 1)
