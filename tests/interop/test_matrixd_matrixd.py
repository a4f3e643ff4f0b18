"""Two matrixd servers federating over TLS on loopback (issue #4)."""

from __future__ import annotations

from tests.interop import scenario


class MatrixdHostsMatrixdJoins(scenario.InteropScenario):
    """Rooms on one matrixd, joined by a user of another."""

    KINDS = ("matrixd", "matrixd")
    HOST = 0
