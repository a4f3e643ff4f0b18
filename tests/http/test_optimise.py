"""matrixd.app.optimise: when a server process restarts itself under -OO."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace
from unittest import mock

from twisted.trial import unittest

from matrixd.app import optimise


class ShouldReexecTestCase(unittest.TestCase):
    def check(self, *, optimize: int = 0, env: str | None = None, executable: str = "/venv/bin/python",
              orig_argv: tuple[str, ...] = ("python", "-m", "matrixd.app.homeserver", "-c", "x.yaml")) -> bool:
        environ = {k: v for k, v in os.environ.items() if k != optimise.ENV_VAR}
        if env is not None:
            environ[optimise.ENV_VAR] = env
        with mock.patch.dict(os.environ, environ, clear=True), \
                mock.patch.object(sys, "flags", SimpleNamespace(optimize=optimize)), \
                mock.patch.object(sys, "executable", executable), \
                mock.patch.object(sys, "orig_argv", list(orig_argv)):
            return optimise.should_reexec()

    def test_plain_start_restarts(self) -> None:
        self.assertTrue(self.check())

    def test_already_optimised_or_turned_off_does_not(self) -> None:
        self.assertFalse(self.check(optimize=2))  # -OO, or PYTHONOPTIMIZE=2: no loop
        self.assertFalse(self.check(env="0"))
        self.assertFalse(self.check(env=" 0\n"))
        self.assertTrue(self.check(env="1"))

    def test_unreplayable_command_line_does_not(self) -> None:
        self.assertFalse(self.check(executable=""))
        self.assertFalse(self.check(orig_argv=("python",)))

    def test_reexec_replays_the_command_line_under_oo(self) -> None:
        with mock.patch.object(optimise, "should_reexec", return_value=True), \
                mock.patch.object(sys, "orig_argv", ["python3", "/venv/bin/matrixd", "-c", "h.yaml"]), \
                mock.patch.object(sys, "executable", "/venv/bin/python3"), \
                mock.patch.object(os, "execv") as execv:
            optimise.reexec_optimised()
        execv.assert_called_once_with(
            "/venv/bin/python3", ["/venv/bin/python3", "-OO", "-X", "no_debug_ranges", "/venv/bin/matrixd", "-c", "h.yaml"])
