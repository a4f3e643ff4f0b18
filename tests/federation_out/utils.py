"""Shared set-up for outbound federation tests: a started sender and a remote that records transactions."""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from matrixd.http.request import MatrixRequest
from matrixd.http.server import ServletResult
from matrixd.testing.federation import FakeRemoteServer
from tests.federation.utils import REMOTE, create_room, join, make_federating_homeserver, send_event

__all__ = ["REMOTE", "create_room", "join", "send_event", "TransactionRecorder", "pump", "started_homeserver"]

JsonDict = dict[str, Any]


class TransactionRecorder:
    """Answers ``PUT /send/{txnId}`` on a fake server, recording each body (or failing on demand)."""

    def __init__(self, remote: FakeRemoteServer) -> None:
        self.transactions: list[JsonDict] = []
        self.txn_ids: list[str] = []
        self.fail_with: Optional[int] = None
        #: When set, requests wait on it (to observe what is in flight).
        self.gate: Optional["defer.Deferred[None]"] = None
        self.in_flight = 0
        self.max_in_flight = 0
        remote.handle("PUT", "/_matrix/federation/v1/send/(?P<txn_id>[^/]*)", self._on_send)

    async def _on_send(self, origin: str, content: JsonDict, request: MatrixRequest, txn_id: str) -> ServletResult:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate
            if self.fail_with is not None:
                return self.fail_with, {"errcode": "M_UNKNOWN", "error": "down"}
            self.transactions.append(content)
            self.txn_ids.append(txn_id)
            return 200, {"pdus": {}}
        finally:
            self.in_flight -= 1

    def pdus(self) -> list[JsonDict]:
        return [p for t in self.transactions for p in t["pdus"]]

    def edus(self, edu_type: Optional[str] = None) -> list[JsonDict]:
        return [e for t in self.transactions for e in t.get("edus", [])
                if edu_type is None or e["edu_type"] == edu_type]


def pump(hs: Any, seconds: float = 2.0, step: float = 0.1) -> None:
    """Advance the fake reactor in small steps so in-memory HTTP exchanges complete."""
    hs.advance(0)
    steps = int(round(seconds / step))
    for _ in range(steps):
        hs.advance(step)


def started_homeserver(testcase: TestCase, config: Optional[JsonDict] = None) -> tuple[Any, Any, FakeRemoteServer]:
    """A federating homeserver whose sender is started (as start_master does)."""
    hs, network, remote = make_federating_homeserver(testcase, config)
    hs.run(hs.components.federation_out.start())
    testcase.addCleanup(hs.components.federation_out.stop)
    return hs, network, remote
