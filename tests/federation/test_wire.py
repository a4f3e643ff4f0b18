"""The outbound stack on the wire: real TCP and TLS on loopback, against an in-test server that checks X-Matrix.

The client is the production one (MatrixFederationAgent: discovery, IP filter,
TLS policy) with DNS answered from a table; the server is a MatrixSite with a
self-signed certificate that records the SNI it was asked for.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import Any, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer, reactor as global_reactor
from twisted.internet.interfaces import IListeningPort
from twisted.trial import unittest

from matrixd.config.federation import DEFAULT_IP_RANGE_BLACKLIST
from matrixd.crypto.keyring import Keyring
from matrixd.crypto.keys import generate_signing_key
from matrixd.crypto.server_keys import FetchedKey, LocalServerKeys
from matrixd.federation.discovery import DnsLookups, LazyResolver, ServerNameResolver
from matrixd.federation.ip_filter import IPRangeFilter
from matrixd.federation.tls import FederationTLSPolicy
from matrixd.federation.transport.agent import MatrixFederationAgent, TargetConnector, https_agent
from matrixd.federation.transport.client import MatrixFederationClient, RequestSendFailed
from matrixd.federation.transport.server import BaseFederationServlet, FederationAuthenticator
from matrixd.federation.well_known import WellKnownResolver
from matrixd.http.request import MatrixRequest, MatrixSite
from matrixd.http.server import JsonResource, federation_patterns
from matrixd.http.tls import listen_tls, server_context
from matrixd.testing.federation import InMemoryKeyStore
from matrixd.util.clock import Clock
from tests.federation.fake_dns import FakeDns

ORIGIN = "origin.test"
REACTOR: Any = global_reactor


def make_certificate(names: list[str], ips: list[str]) -> tuple[bytes, bytes]:
    """A self-signed certificate (PEM) and its key (PEM) for the given names and addresses."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class _EchoServlet(BaseFederationServlet):
    """Answers with what the request looked like once authenticated."""

    PATTERNS = federation_patterns("/echo")

    def __init__(self, authenticator: FederationAuthenticator, sni: list[Optional[bytes]]) -> None:
        super().__init__(authenticator)
        self._sni = sni

    async def on_GET(self, origin: str, content: None, request: MatrixRequest) -> tuple[int, Any]:
        return 200, self._describe(origin, content, request)

    async def on_PUT(self, origin: str, content: Any, request: MatrixRequest) -> tuple[int, Any]:
        return 200, self._describe(origin, content, request)

    def _describe(self, origin: str, content: Any, request: MatrixRequest) -> Any:
        host = request.getHeader(b"host")
        return {
            "origin": origin,
            "content": content,
            "host": host.decode() if host else None,
            "sni": [s.decode() if s else None for s in self._sni],
            "uri": request.uri.decode(),
        }


class WireTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.cert_pem, key_pem = make_certificate(["fed.test", "srv.test"], ["127.0.0.1"])
        self.sni: list[Optional[bytes]] = []
        self.signing_key = generate_signing_key("wire")
        self.dns = FakeDns()
        self.dns.a["fed.test"] = ["127.0.0.1"]
        self.dns.a["wrong.test"] = ["127.0.0.1"]
        self.server_names: list[str] = []
        directory = self.mktemp()
        os.makedirs(directory)
        cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
        with open(cert_path, "wb") as f:
            f.write(self.cert_pem)
        with open(key_path, "wb") as f:
            f.write(key_pem)
        context = server_context(cert_path, key_path)
        context.sni_callback = lambda _obj, name, _ctx: self.sni.append(name.encode() if name else None)
        self.resource = JsonResource()
        self.site = MatrixSite(self.resource, REACTOR, timeout=None)
        self.port: IListeningPort = listen_tls(REACTOR, 0, self.site, context, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.port_number = self.port.getHost().port

    def serve_as(self, server_name: str) -> None:
        """Register the echo servlet for requests addressed to ``server_name``, trusting our key."""
        clock = Clock(REACTOR)
        store = InMemoryKeyStore()
        verify_key = LocalServerKeys(clock, ORIGIN, self.signing_key, {}, 3600_000).verify_keys()
        store.keys.update({(ORIGIN, kid): FetchedKey(k.verify_key, k.valid_until_ts) for kid, k in verify_key.items()})
        server_keys = LocalServerKeys(clock, server_name, generate_signing_key("srv"), {}, 3600_000)
        never = MatrixFederationClient(clock, server_name=server_name, signing_key=server_keys.signing_key,
                                       agent=None)  # type: ignore[arg-type]  # keys are all in the store
        keyring = Keyring(clock, server_keys, store, never)
        _EchoServlet(FederationAuthenticator(clock, server_name, keyring), self.sni).register(self.resource)

    def client(self, *, whitelist: bool = True, verify: bool = False, ca_pem: Optional[str] = None) -> MatrixFederationClient:
        blacklist = [ipaddress.ip_network(n) for n in DEFAULT_IP_RANGE_BLACKLIST]
        ip_filter = IPRangeFilter(blacklist, [ipaddress.ip_network("127.0.0.1/32")] if whitelist else [])
        lookups = DnsLookups(LazyResolver(lambda: self.dns))  # type: ignore[arg-type,return-value]
        tls = FederationTLSPolicy(verify=verify, ca_pem=ca_pem)
        connector = TargetConnector(REACTOR, lookups, ip_filter, tls, connect_timeout_s=5)
        clock = Clock(REACTOR)
        well_known = WellKnownResolver(clock, https_agent(REACTOR, connector), timeout_s=5)
        agent = MatrixFederationAgent(REACTOR, ServerNameResolver(well_known, lookups), connector)
        self.addCleanup(agent.close)
        return MatrixFederationClient(clock, server_name=ORIGIN, signing_key=self.signing_key, agent=agent)

    def test_signed_get_to_ip_literal(self) -> None:
        """To an IP literal: Host is the server name, no SNI, and the server verifies our signature."""
        destination = f"127.0.0.1:{self.port_number}"
        self.serve_as(destination)

        async def go() -> None:
            got = await self.client().get_json(destination, "/_matrix/federation/v1/echo", {"a": "b c"})
            self.assertEqual(got["origin"], ORIGIN)
            self.assertEqual(got["host"], destination)
            self.assertEqual(got["sni"], [None])
            self.assertEqual(got["uri"], "/_matrix/federation/v1/echo?a=b%20c")

        return defer.ensureDeferred(go())  # type: ignore[return-value]

    def test_signed_put_to_hostname(self) -> None:
        """To hostname:port: DNS gives the address, Host and SNI carry the name, the body is signed too."""
        destination = f"fed.test:{self.port_number}"
        self.serve_as(destination)

        async def go() -> None:
            got = await self.client().put_json(destination, "/_matrix/federation/v1/echo", {"pdus": [], "x": "é"})
            self.assertEqual((got["origin"], got["content"]), (ORIGIN, {"pdus": [], "x": "é"}))
            self.assertEqual(got["host"], destination)
            self.assertEqual(got["sni"], ["fed.test"])

        return defer.ensureDeferred(go())  # type: ignore[return-value]

    def test_srv_discovery_on_the_wire(self) -> None:
        """No port and no well-known: the SRV target is used, with Host and SNI of the server name."""
        self.dns.srv["_matrix-fed._tcp.srv.test"] = [(0, 0, self.port_number, "fed.test")]
        self.serve_as("srv.test")

        async def go() -> None:
            got = await self.client().get_json("srv.test", "/_matrix/federation/v1/echo")
            self.assertEqual((got["origin"], got["host"]), (ORIGIN, "srv.test"))
            self.assertEqual(got["sni"][-1], "srv.test")
            self.assertIn(("A", "srv.test"), self.dns.queries)  # the well-known host was looked up first

        return defer.ensureDeferred(go())  # type: ignore[return-value]

    def test_certificate_verification(self) -> None:
        """With verification on, a trusted certificate for the name passes; a wrong name or an unknown CA fails."""
        trust = self.cert_pem.decode()
        good = f"fed.test:{self.port_number}"
        self.serve_as(good)

        async def go() -> None:
            got = await self.client(verify=True, ca_pem=trust).get_json(good, "/_matrix/federation/v1/echo")
            self.assertEqual(got["origin"], ORIGIN)
            with self.assertRaises(RequestSendFailed):
                await self.client(verify=True, ca_pem=trust).get_json(
                    f"wrong.test:{self.port_number}", "/_matrix/federation/v1/echo", max_retries=0)
            with self.assertRaises(RequestSendFailed):
                await self.client(verify=True).get_json(good, "/_matrix/federation/v1/echo", max_retries=0)

        return defer.ensureDeferred(go())  # type: ignore[return-value]

    def test_loopback_refused_unless_whitelisted(self) -> None:
        """The default IP blacklist refuses 127.0.0.1 before connecting; the error is not retryable."""
        destination = f"127.0.0.1:{self.port_number}"
        self.serve_as(destination)
        connections: list[Any] = []
        original = self.site.buildProtocol

        def counting(addr: Any) -> Any:
            connections.append(addr)
            return original(addr)

        self.site.buildProtocol = counting  # type: ignore[method-assign]

        async def go() -> None:
            with self.assertRaises(RequestSendFailed) as cm:
                await self.client(whitelist=False).get_json(destination, "/_matrix/federation/v1/echo")
            self.assertFalse(cm.exception.can_retry)
            self.assertIn("refused IP range", cm.exception.reason)
            self.assertEqual(connections, [])
            with self.assertRaises(RequestSendFailed):
                await self.client(whitelist=False).get_json(f"fed.test:{self.port_number}", "/_matrix/federation/v1/echo")
            self.assertEqual(connections, [])

        return defer.ensureDeferred(go())  # type: ignore[return-value]
