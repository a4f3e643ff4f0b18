"""Benchmarks: compile the bytecode a matrixd server process loads before timing one.

matrixd's server processes run under ``-OO`` (``matrixd.app.optimise``) and so
load ``.opt-2.pyc`` files. pip writes only plain ``.pyc`` files at install time,
and any first start writes the rest, unless ``PYTHONDONTWRITEBYTECODE`` is set
(it is on some CI machines): then every start would compile every module
again, which no deployed server does. Synapse, installed by pip, loads its
plain ``.pyc`` files in the same benchmarks.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys

from matrixd.app.optimise import FLAGS

MATRIXD_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def compile_server_bytecode() -> None:
    """Write the bytecode (``-OO``, compiled with the server's ``FLAGS``) of matrixd and of this
    interpreter's site-packages, all of it again (a file compiled under other flags would not be stale)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [sys.executable, *FLAGS, "-m", "compileall", "-q", "-f", "-j0", MATRIXD_DIR, *site.getsitepackages()],
        env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
