"""Server discovery ("Resolving server names"): IP literals, ports, .well-known, SRV and the fallbacks.

Well-known files are served over real HTTP by fake servers on the in-memory
network; DNS answers come from a table.
"""

from __future__ import annotations

import json
import random
from typing import Any, Optional

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.federation.discovery import DnsLookups, LazyResolver, Route, ServerNameResolver, split_server_name
from matrixd.federation.well_known import WellKnownResolver
from matrixd.http.request import MatrixRequest
from matrixd.http.server import respond_with_bytes
from matrixd.testing.federation import FakeRemoteServer, FederationNetwork
from matrixd.testing.http import make_reactor
from matrixd.util.clock import Clock
from tests.federation.fake_dns import FakeDns

WK = "/.well-known/matrix/server"


class DiscoveryTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.reactor = make_reactor()
        self.reactor.advance(1_700_000_000)
        self.network = FederationNetwork(self.reactor)
        self.dns = FakeDns()
        lookups = DnsLookups(LazyResolver(lambda: self.dns), rng=random.Random(4))  # type: ignore[arg-type,return-value]
        self.well_known = WellKnownResolver(Clock(self.reactor), self.network.agent)
        self.resolver = ServerNameResolver(self.well_known, lookups)
        self.lookups = lookups

    def serve_well_known(self, host: str, body: Any, code: int = 200, headers: Optional[dict[str, str]] = None,
                         raw: Optional[bytes] = None) -> FakeRemoteServer:
        server = FakeRemoteServer(self.network, host, serve_keys=False)

        async def answer(request: MatrixRequest) -> None:
            for name, value in (headers or {}).items():
                request.setHeader(name, value)
            payload = raw if raw is not None else json.dumps(body).encode()
            respond_with_bytes(request, code, payload, b"application/json")

        server.handle_raw("GET", WK, answer)
        return server

    def resolve(self, server_name: str) -> Route:
        route: Route = self.network.run(self.resolver.resolve(server_name))
        return route

    def well_known_fetches(self, host: str) -> int:
        return self.network.requests_sent.count(("GET", f"https://{host}{WK}"))

    # -- no lookups needed --------------------------------------------------------

    def test_ip_literals(self) -> None:
        """IP literals go straight to the address, port 8448 by default, Host is the server name."""
        self.assertEqual(self.resolve("1.2.3.4"), Route("1.2.3.4", "1.2.3.4", (("1.2.3.4", 8448),)))
        self.assertEqual(self.resolve("1.2.3.4:80"), Route("1.2.3.4:80", "1.2.3.4", (("1.2.3.4", 80),)))
        self.assertEqual(self.resolve("[2001:db8::1]"), Route("[2001:db8::1]", "2001:db8::1", (("2001:db8::1", 8448),)))
        self.assertEqual(self.resolve("[2001:db8::1]:9000"),
                         Route("[2001:db8::1]:9000", "2001:db8::1", (("2001:db8::1", 9000),)))
        self.assertEqual(self.network.requests_sent, [])
        self.assertEqual(self.dns.queries, [])

    def test_explicit_port(self) -> None:
        """A hostname with a port is used as is: no well-known, no SRV."""
        self.assertEqual(self.resolve("host.test:8000"), Route("host.test:8000", "host.test", (("host.test", 8000),)))
        self.assertEqual(self.network.requests_sent, [])
        self.assertEqual(self.dns.queries, [])

    def test_invalid_server_name(self) -> None:
        """Names outside the grammar are a ValueError."""
        for name in ("bad name", "host:99999", "[not-ipv6]", ""):
            with self.assertRaises(ValueError):
                split_server_name(name)

    # -- .well-known ----------------------------------------------------------------

    def test_delegation_with_port(self) -> None:
        """m.server with a port: connect there, Host is delegated:port, certificate for the delegated name."""
        self.serve_well_known("example.test", {"m.server": "matrix.example.test:1234"})
        self.assertEqual(self.resolve("example.test"),
                         Route("matrix.example.test:1234", "matrix.example.test", (("matrix.example.test", 1234),)))
        self.assertEqual(self.dns.queries, [])

    def test_delegation_to_ip_literal(self) -> None:
        """m.server may be an IP literal: port 8448 unless given; Host is the literal."""
        self.serve_well_known("example.test", {"m.server": "10.1.2.3"})
        self.assertEqual(self.resolve("example.test"), Route("10.1.2.3", "10.1.2.3", (("10.1.2.3", 8448),)))

    def test_delegation_then_srv(self) -> None:
        """Without a delegated port, _matrix-fed._tcp SRV of the delegated name decides; Host is the delegated name."""
        self.serve_well_known("example.test", {"m.server": "matrix.example.test"})
        self.dns.srv["_matrix-fed._tcp.matrix.example.test"] = [(10, 0, 8449, "fed1.example.test"),
                                                                (20, 0, 8450, "fed2.example.test")]
        self.dns.srv["_matrix._tcp.matrix.example.test"] = [(10, 0, 9999, "legacy.example.test")]
        self.assertEqual(self.resolve("example.test"), Route(
            "matrix.example.test", "matrix.example.test",
            (("fed1.example.test", 8449), ("fed2.example.test", 8450)),
        ))

    def test_delegation_then_legacy_srv_then_default_port(self) -> None:
        """The deprecated _matrix._tcp SRV is used when _matrix-fed is absent; with neither, port 8448."""
        self.serve_well_known("example.test", {"m.server": "matrix.example.test"})
        self.dns.srv["_matrix._tcp.matrix.example.test"] = [(10, 0, 9999, "legacy.example.test")]
        self.assertEqual(self.resolve("example.test").targets, (("legacy.example.test", 9999),))
        self.serve_well_known("plain.test", {"m.server": "matrix.plain.test"})
        self.assertEqual(self.resolve("plain.test"),
                         Route("matrix.plain.test", "matrix.plain.test", (("matrix.plain.test", 8448),)))

    def test_no_well_known_srv_of_hostname(self) -> None:
        """Without a well-known file, SRV records of the server's own hostname are used."""
        self.dns.srv["_matrix-fed._tcp.example.test"] = [(0, 0, 443, "fed.example.test")]
        self.assertEqual(self.resolve("example.test"),
                         Route("example.test", "example.test", (("fed.example.test", 443),)))
        self.assertEqual(self.well_known_fetches("example.test"), 1)

    def test_no_well_known_no_srv(self) -> None:
        """With neither, the hostname itself on port 8448."""
        self.assertEqual(self.resolve("example.test"), Route("example.test", "example.test", (("example.test", 8448),)))
        self.assertEqual(self.dns.queries, [("SRV", "_matrix-fed._tcp.example.test"), ("SRV", "_matrix._tcp.example.test")])

    def test_invalid_well_known_falls_through(self) -> None:
        """Bad JSON, a missing or invalid m.server, or a non-200 answer mean no delegation."""
        cases: list[dict[str, Any]] = [
            {"raw": b"{not json"},
            {"body": ["m.server", "x.test"]},
            {"body": {"m.server": 5}},
            {"body": {"m.server": "bad name:1"}},
            {"body": {"m.server": "x.test"}, "code": 404},
            {"body": {"m.server": "x.test"}, "code": 500},
        ]
        for i, case in enumerate(cases):
            host = f"case{i}.test"
            self.serve_well_known(host, case.get("body"), code=case.get("code", 200), raw=case.get("raw"))
            self.assertEqual(self.resolve(host), Route(host, host, ((host, 8448),)), case)

    def test_redirects(self) -> None:
        """30x redirects are followed (https only); loops are a failure."""
        source = FakeRemoteServer(self.network, "example.test", serve_keys=False)

        async def redirect(request: MatrixRequest) -> None:
            request.setHeader(b"Location", b"https://elsewhere.test/wk")
            respond_with_bytes(request, 302, b"", b"text/plain")

        source.handle_raw("GET", WK, redirect)
        target = FakeRemoteServer(self.network, "elsewhere.test", serve_keys=False)

        async def answer(request: MatrixRequest) -> tuple[int, Any]:
            return 200, {"m.server": "delegated.test:443"}

        target.handle_raw("GET", "/wk", answer)
        self.assertEqual(self.resolve("example.test").host_header, "delegated.test:443")

        loop = FakeRemoteServer(self.network, "loop.test", serve_keys=False)

        async def to_self(request: MatrixRequest) -> None:
            request.setHeader(b"Location", WK.encode())
            respond_with_bytes(request, 301, b"", b"text/plain")

        loop.handle_raw("GET", WK, to_self)
        self.assertEqual(self.resolve("loop.test").targets, (("loop.test", 8448),))

        insecure = FakeRemoteServer(self.network, "insecure.test", serve_keys=False)

        async def to_http(request: MatrixRequest) -> None:
            request.setHeader(b"Location", b"http://elsewhere.test/wk")
            respond_with_bytes(request, 302, b"", b"text/plain")

        insecure.handle_raw("GET", WK, to_http)
        self.assertEqual(self.resolve("insecure.test").targets, (("insecure.test", 8448),))

    # -- caching ----------------------------------------------------------------------

    def test_success_cached_for_max_age(self) -> None:
        """A delegation is reused for its Cache-Control max-age (at least 5 minutes), then refetched."""
        self.serve_well_known("example.test", {"m.server": "m.test:1"}, headers={"Cache-Control": "max-age=600"})
        self.resolve("example.test")
        self.reactor.advance(590)
        self.resolve("example.test")
        self.assertEqual(self.well_known_fetches("example.test"), 1)
        self.reactor.advance(20)
        self.resolve("example.test")
        self.assertEqual(self.well_known_fetches("example.test"), 2)

    def test_success_cached_a_day_by_default(self) -> None:
        """Without caching headers a delegation is kept 24 hours."""
        self.serve_well_known("example.test", {"m.server": "m.test:1"})
        self.resolve("example.test")
        self.reactor.advance(23 * 3600)
        self.resolve("example.test")
        self.assertEqual(self.well_known_fetches("example.test"), 1)
        self.reactor.advance(2 * 3600)
        self.resolve("example.test")
        self.assertEqual(self.well_known_fetches("example.test"), 2)

    def test_failures_cached_with_backoff(self) -> None:
        """A missing well-known is cached 2 minutes, then 4, doubling per consecutive failure."""
        self.resolve("example.test")  # nothing on the network: connection refused
        self.reactor.advance(110)
        self.resolve("example.test")
        self.assertEqual(self.well_known_fetches("example.test"), 1)
        self.reactor.advance(20)
        self.resolve("example.test")
        self.assertEqual(self.well_known_fetches("example.test"), 2)
        self.reactor.advance(200)
        self.resolve("example.test")
        self.assertEqual(self.well_known_fetches("example.test"), 2)
        self.reactor.advance(50)
        self.resolve("example.test")
        self.assertEqual(self.well_known_fetches("example.test"), 3)

    def test_concurrent_lookups_share_a_request(self) -> None:
        """Simultaneous resolutions of one name make one well-known request."""
        self.serve_well_known("example.test", {"m.server": "m.test:1"})
        ds = [defer.ensureDeferred(self.resolver.resolve("example.test")) for _ in range(4)]
        routes = self.network.run(defer.gatherResults(ds))
        self.assertEqual({r.host_header for r in routes}, {"m.test:1"})
        self.assertEqual(self.well_known_fetches("example.test"), 1)

    def test_transient_error_keeps_previous_delegation(self) -> None:
        """After expiry, a 5xx or unreachable server keeps the last delegation; a 404 ends it."""
        server = self.serve_well_known("example.test", {"m.server": "m.test:1"},
                                       headers={"Cache-Control": "max-age=300"})
        self.resolve("example.test")
        self.network.remove_server("example.test")
        self.reactor.advance(301)
        self.assertEqual(self.resolve("example.test").host_header, "m.test:1")
        self.network.add_server("example.test", server.site)
        self.reactor.advance(121)
        self.serve_well_known("example.test", None, code=404)
        self.assertEqual(self.resolve("example.test").host_header, "example.test")

    # -- SRV ----------------------------------------------------------------------------

    def test_srv_order_and_dot_target(self) -> None:
        """SRV targets come by priority (weights order within one); a lone "." target means no service."""
        self.dns.srv["_matrix-fed._tcp.a.test"] = [(20, 1, 3, "c.test"), (10, 5, 1, "a.test"), (10, 5, 2, "b.test")]
        targets = self.network.run(self.lookups.lookup_srv("_matrix-fed._tcp.a.test"))
        self.assertEqual(sorted(targets[:2]), [("a.test", 1), ("b.test", 2)])
        self.assertEqual(targets[2], ("c.test", 3))
        self.dns.srv["_matrix-fed._tcp.none.test"] = [(0, 0, 0, ".")]
        self.assertEqual(self.network.run(self.lookups.lookup_srv("_matrix-fed._tcp.none.test")), [])

    def test_address_resolution(self) -> None:
        """Hostnames resolve to A then AAAA addresses; IP literals to themselves."""
        self.dns.a["h.test"] = ["192.0.2.1"]
        self.dns.aaaa["h.test"] = ["2001:db8::5"]
        self.assertEqual(self.network.run(self.lookups.resolve_addresses("h.test")), ["192.0.2.1", "2001:db8::5"])
        self.assertEqual(self.network.run(self.lookups.resolve_addresses("::1")), ["::1"])
        self.assertEqual(self.network.run(self.lookups.resolve_addresses("missing.test")), [])
