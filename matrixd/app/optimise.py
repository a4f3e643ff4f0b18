"""Server processes run under ``python -OO``, without pyOpenSSL.

``-OO`` drops docstrings and ``assert`` statements from every module the
process loads. A server never reads either (our asserts only narrow types for
mypy, after the real checks), and the docstrings of matrixd, Twisted and the
other libraries are about 3 MiB of each process's resident memory, a
twentieth of an idle homeserver.

The ``matrixd`` command (and ``python -m matrixd.app.homeserver`` or
``.worker``) replaces itself with the same command line under ``-OO`` (and
``-X no_debug_ranges``, see ``FLAGS``) before
it loads anything else; the process id stays the same, so supervisors and
ready files are unaffected. ``MATRIXD_PYTHON_OPTIMIZE=0`` in the environment
keeps the process as started (to debug with asserts, say); a process started
with ``-OO`` or ``PYTHONOPTIMIZE=2`` is left alone.

They also never import pyOpenSSL (:func:`hide_pyopenssl`): its import loads
cryptography's bindings, about 13 MiB of an idle server, and their TLS runs on Python's
``ssl`` instead (:mod:`matrixd.http.tls`).
"""

from __future__ import annotations

import os
import sys

#: Set to ``0`` to run without ``-OO``.
ENV_VAR = "MATRIXD_PYTHON_OPTIMIZE"

#: The interpreter options a server process runs with. ``no_debug_ranges``
#: leaves the column positions out of code compiled for it (tracebacks show
#: lines without the ``^^^`` markers): another 0.5 MiB.
FLAGS = ("-OO", "-X", "no_debug_ranges")


def should_reexec() -> bool:
    """Whether this process should restart itself under ``-OO``."""
    if sys.flags.optimize >= 2 or os.environ.get(ENV_VAR, "").strip() == "0":
        return False
    # orig_argv is the interpreter's own command line: replayable only when the
    # process was started as a program (a script path or -m), not embedded.
    return bool(sys.executable) and len(sys.orig_argv) >= 2


def reexec_optimised() -> None:
    """Replace this process with its own command line under ``python -OO`` (see module docstring).

    Returns only when no restart is needed.
    """
    if not should_reexec():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *FLAGS, *sys.orig_argv[1:]])


def hide_pyopenssl() -> None:
    """Make ``import OpenSSL`` fail in this process; call it before Twisted is imported.

    Twisted treats pyOpenSSL as optional: without it, its own TLS (``listenSSL``,
    ``twisted.internet.ssl``) is unavailable and everything else works.
    """
    if "OpenSSL" not in sys.modules:
        sys.modules["OpenSSL"] = None  # type: ignore[assignment]


def prepare_server_process() -> None:
    """What a server command does first: restart under ``-OO`` if needed, then hide pyOpenSSL."""
    reexec_optimised()
    hide_pyopenssl()
