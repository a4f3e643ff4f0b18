"""A DNS resolver answering from tables, for discovery tests (SRV, A and AAAA only)."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.names import dns, error


class FakeDns:
    """``IResolver``-like: ``srv[name] = [(priority, weight, port, target)]``, ``a[name]``, ``aaaa[name]``."""

    def __init__(self) -> None:
        self.srv: dict[str, list[tuple[int, int, int, str]]] = {}
        self.a: dict[str, list[str]] = {}
        self.aaaa: dict[str, list[str]] = {}
        self.queries: list[tuple[str, str]] = []

    def _answer(self, name: str, records: list[dns.RRHeader]) -> "defer.Deferred[Any]":
        if not records:
            return defer.fail(error.DNSNameError(name))
        return defer.succeed((records, [], []))

    def lookupService(self, name: str, timeout: Any = None) -> "defer.Deferred[Any]":
        self.queries.append(("SRV", name))
        records = [
            dns.RRHeader(name.encode(), dns.SRV, payload=dns.Record_SRV(prio, weight, port, target.encode()))
            for prio, weight, port, target in self.srv.get(name, [])
        ]
        return self._answer(name, records)

    def lookupAddress(self, name: str, timeout: Any = None) -> "defer.Deferred[Any]":
        self.queries.append(("A", name))
        records = [dns.RRHeader(name.encode(), dns.A, payload=dns.Record_A(ip)) for ip in self.a.get(name, [])]
        return self._answer(name, records)

    def lookupIPV6Address(self, name: str, timeout: Any = None) -> "defer.Deferred[Any]":
        self.queries.append(("AAAA", name))
        records = [
            dns.RRHeader(name.encode(), dns.AAAA, payload=dns.Record_AAAA(ip))
            for ip in self.aaaa.get(name, [])
        ]
        return self._answer(name, records)
