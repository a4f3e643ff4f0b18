"""matrixd and Synapse federating over TLS on loopback, in both directions (issue #4)."""

from __future__ import annotations

from tests.interop import scenario


class MatrixdHostsSynapseJoins(scenario.InteropScenario):
    """Rooms on matrixd, joined by a Synapse user."""

    KINDS = ("matrixd", "synapse")
    HOST = 0


class SynapseHostsMatrixdJoins(scenario.InteropScenario):
    """Rooms on Synapse, joined by a matrixd user."""

    KINDS = ("matrixd", "synapse")
    HOST = 1
