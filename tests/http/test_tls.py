"""TLS on Python's ssl module (matrixd.http.tls), over real loopback sockets.

And the server processes' promise behind it: they never import pyOpenSSL.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from typing import Any, Optional

from twisted.internet import defer, reactor as global_reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.client import readBody
from twisted.web.resource import Resource
from twisted.web.server import Site

from matrixd.http.tls import TLSClientEndpoint, client_context, listen_tls, outbound_agent, server_context
from matrixd.testing.federation_pair import write_self_signed_certificate

REACTOR: Any = global_reactor
BIG = os.urandom(3 * 1024 * 1024)


class _Peer(Protocol):
    """Collects what it receives; optionally writes on connecting, echoes, or closes after N bytes."""

    def __init__(self, greeting: bytes = b"", echo: bool = False, close_after: Optional[int] = None,
                 abort_after: Optional[int] = None) -> None:
        self.greeting = greeting
        self.echo = echo
        self.close_after = close_after
        self.abort_after = abort_after
        self.received = bytearray()
        self.lost: "defer.Deferred[None]" = defer.Deferred()
        self.reason: Optional[Failure] = None
        self.secure: Optional[bool] = None

    def connectionMade(self) -> None:
        from twisted.internet.interfaces import ISSLTransport

        self.secure = ISSLTransport.providedBy(self.transport)
        if self.greeting:
            self.transport.write(self.greeting)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.echo:
            self.transport.write(data)  # type: ignore[union-attr]
        if self.close_after is not None and len(self.received) >= self.close_after:
            self.transport.loseConnection()  # type: ignore[union-attr]
        if self.abort_after is not None and len(self.received) >= self.abort_after:
            self.abort_after = None
            self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        self.reason = reason
        self.lost.callback(None)


async def _reason(peer: _Peer) -> Failure:
    await peer.lost
    assert peer.reason is not None
    return peer.reason


class TLSTests(unittest.TestCase):
    def setUp(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        self.cert_path, self.key_path = write_self_signed_certificate(directory)
        with open(self.cert_path) as f:
            self.ca_pem = f.read()
        self.server_peers: list[_Peer] = []
        self.sni: list[Optional[str]] = []

    def listen(self, **peer_args: Any) -> int:
        context = server_context(self.cert_path, self.key_path)
        context.sni_callback = lambda _obj, name, _ctx: self.sni.append(name)  # type: ignore[assignment,misc]

        def build() -> _Peer:
            peer = _Peer(**peer_args)
            self.server_peers.append(peer)
            return peer

        port: IListeningPort = listen_tls(REACTOR, 0, Factory.forProtocol(build), context, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)  # type: ignore[attr-defined]

    async def connect(self, port: int, name: Optional[str], context: Optional[ssl.SSLContext] = None,
                      **peer_args: Any) -> _Peer:
        context = context or client_context(verify=True, ca_pem=self.ca_pem)
        endpoint = TLSClientEndpoint(TCP4ClientEndpoint(REACTOR, "127.0.0.1", port), context, name)
        peer = _Peer(**peer_args)
        protocol = await endpoint.connect(Factory.forProtocol(lambda: peer))
        self.assertIs(protocol, peer)
        return peer

    def test_large_writes_both_ways_and_clean_close(self) -> None:
        """3 MiB echoed back intact, written before the handshake finished; close_notify closes both sides."""
        async def go() -> None:
            port = self.listen(echo=True)
            client = await self.connect(port, "localhost", greeting=BIG, close_after=len(BIG))
            client_reason = await _reason(client)
            server_reason = await _reason(self.server_peers[0])
            self.assertEqual(bytes(client.received), BIG)
            self.assertEqual(bytes(self.server_peers[0].received), BIG)
            client_reason.trap(ConnectionDone)
            server_reason.trap(ConnectionDone)
            self.assertTrue(client.secure)
            self.assertTrue(self.server_peers[0].secure)
            self.assertEqual(self.sni, ["localhost"])

        return defer.ensureDeferred(go())  # type: ignore[return-value]

    def test_abort_stops_delivery(self) -> None:
        """An application that aborts hears nothing more, and the connection goes at once."""
        async def go() -> None:
            port = self.listen(echo=True)
            client = await self.connect(port, "localhost", greeting=BIG, abort_after=1)
            reason = await _reason(client)
            reason.trap(ConnectionAborted)
            self.assertLess(len(client.received), len(BIG))
            await _reason(self.server_peers[0])

        return defer.ensureDeferred(go())  # type: ignore[return-value]

    def test_ip_literal_is_verified_and_never_sent_as_sni(self) -> None:
        async def go() -> None:
            port = self.listen(greeting=b"hello", close_after=2)
            client = await self.connect(port, "127.0.0.1", greeting=b"hi")
            (await _reason(client)).trap(ConnectionDone)
            self.assertEqual(bytes(client.received), b"hello")
            self.assertEqual(self.sni, [None])

        return defer.ensureDeferred(go())  # type: ignore[return-value]

    def test_wrong_name_fails_verification(self) -> None:
        """A certificate that does not name the host: the client's protocol hears the ssl error, nothing is sent."""
        async def go() -> None:
            port = self.listen()
            client = await self.connect(port, "other.test", greeting=b"secret")
            reason = await _reason(client)
            self.assertIsInstance(reason.value, ssl.SSLCertVerificationError)
            server_reason = await _reason(self.server_peers[0])
            self.assertIsInstance(server_reason.value, ssl.SSLError)  # the client's alert
            self.assertEqual(bytes(self.server_peers[0].received), b"")

        return defer.ensureDeferred(go())  # type: ignore[return-value]

    def test_unknown_ca_fails_unless_unverified(self) -> None:
        async def go() -> None:
            port = self.listen(greeting=b"hello", close_after=2)
            refused = await self.connect(port, "localhost", client_context(verify=True))
            self.assertIsInstance((await _reason(refused)).value, ssl.SSLCertVerificationError)
            accepted = await self.connect(port, "localhost", client_context(verify=False), greeting=b"ok")
            (await _reason(accepted)).trap(ConnectionDone)
            self.assertEqual(bytes(accepted.received), b"hello")
            self.assertEqual(self.sni[-1], "localhost")  # unverified connections still send SNI

        return defer.ensureDeferred(go())  # type: ignore[return-value]

    def test_plaintext_client_is_dropped(self) -> None:
        """A client speaking plain HTTP to a TLS port: the server's protocol sees an ssl error, nothing else."""
        async def go() -> None:
            port = self.listen()
            raw = _Peer(greeting=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await TCP4ClientEndpoint(REACTOR, "127.0.0.1", port).connect(Factory.forProtocol(lambda: raw))
            await raw.lost
            reason = await _reason(self.server_peers[0])
            self.assertIsInstance(reason.value, ssl.SSLError)
            self.assertEqual(bytes(self.server_peers[0].received), b"")

        return defer.ensureDeferred(go())  # type: ignore[return-value]

    def test_outbound_agent_https_and_http(self) -> None:
        root = Resource()
        leaf = Resource()
        leaf.render_GET = lambda request: b"secure" if request.isSecure() else b"plain"  # type: ignore[attr-defined]
        root.putChild(b"where", leaf)
        context = server_context(self.cert_path, self.key_path)
        tls_port = listen_tls(REACTOR, 0, Site(root), context, interface="127.0.0.1")
        plain_port = REACTOR.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(tls_port.stopListening)
        self.addCleanup(plain_port.stopListening)
        agent = outbound_agent(REACTOR, connect_timeout=5, context=client_context(verify=True, ca_pem=self.ca_pem))

        async def go() -> None:
            secure = await agent.request(b"GET", f"https://localhost:{tls_port.getHost().port}/where".encode())
            self.assertEqual(await readBody(secure), b"secure")
            plain = await agent.request(b"GET", f"http://127.0.0.1:{plain_port.getHost().port}/where".encode())
            self.assertEqual(await readBody(plain), b"plain")

        return defer.ensureDeferred(go())  # type: ignore[return-value]


class NoPyOpenSSLTests(unittest.TestCase):
    def test_server_processes_never_import_pyopenssl(self) -> None:
        """With pyOpenSSL hidden as the server commands do, every process role still imports, and
        neither pyOpenSSL nor cryptography is loaded."""
        code = (
            "import sys\n"
            "from matrixd.app.optimise import hide_pyopenssl\n"
            "hide_pyopenssl()\n"
            "import matrixd.app.homeserver, matrixd.app.worker, matrixd.app.master\n"
            "import twisted.internet.reactor\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('cryptography', 'service_identity')"
            " or (m.startswith('OpenSSL') and sys.modules[m] is not None))\n"
            "print(loaded)\n"
        )
        env = {**os.environ, "MATRIXD_PYTHON_OPTIMIZE": "0"}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(), "[]")
