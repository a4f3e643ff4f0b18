"""TLS for every connection a server process makes or accepts, on Python's own ``ssl`` module.

Why not Twisted's TLS: it is built on pyOpenSSL, and importing pyOpenSSL
loads cryptography's bindings, a second, statically linked OpenSSL: about
13 MiB of resident memory in every process, a fifth of an idle homeserver.
Python's ``ssl`` links the system's OpenSSL, which the process loads anyway.
So the server commands hide pyOpenSSL
(:func:`matrixd.app.optimise.hide_pyopenssl`, before Twisted is imported;
Twisted then runs without its own TLS), and TLS goes through
:class:`TLSProtocol`: an ``ssl.SSLObject`` over two memory BIOs between the
TCP transport and the application's protocol.

* Servers: :func:`listen_tls` with :func:`server_context` (the configured
  certificate chain and key).
* Clients: :class:`TLSClientEndpoint` around any stream endpoint, with a
  context from :func:`client_context`; :func:`outbound_agent` is an HTTP(S)
  ``IAgent`` built on it (push gateways, application services, replication).

TLS 1.2 is the minimum both ways. Application data written before the
handshake finishes is held and sent once it has; a failed handshake (a
certificate that does not verify, say) closes the connection, and the
application's protocol hears the ``ssl`` error as the reason.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any, Optional

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    IListeningPort,
    ISSLTransport,
    ITCPTransport,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.client import URI, Agent, HTTPConnectionPool
from twisted.web.iweb import IAgent, IAgentEndpointFactory
from zope.interface import directlyProvides, implementer, providedBy

logger = logging.getLogger(__name__)

#: The most plaintext handed to the application per read.
READ_SIZE = 65536


# -- contexts -----------------------------------------------------------------------------


def server_context(certificate_path: str, private_key_path: str) -> ssl.SSLContext:
    """A server context with the certificate chain (PEM, leaf first) and its key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate_path, private_key_path)
    return context


def client_context(verify: bool = True, ca_pem: Optional[str] = None) -> ssl.SSLContext:
    """A client context: certificates checked against the platform's CAs (or ``ca_pem``), or not at all.

    A verifying connection checks the certificate names the host it was given
    (a DNS name or an IP address).
    """
    if verify:
        context = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


_default_client_context: Optional[ssl.SSLContext] = None


def default_client_context() -> ssl.SSLContext:
    """One verifying client context per process (loading the platform's CAs costs memory)."""
    global _default_client_context
    if _default_client_context is None:
        _default_client_context = client_context()
    return _default_client_context


# -- the protocol ---------------------------------------------------------------------------


@implementer(ISSLTransport)
class TLSProtocol(ProtocolWrapper):
    """TLS between a TCP transport (below) and the application's protocol (above)."""

    factory: "TLSFactory"

    def __init__(self, factory: "TLSFactory", wrapped: IProtocol) -> None:
        super().__init__(factory, wrapped)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = factory.context.wrap_bio(
            self._incoming, self._outgoing, server_side=factory.server_side,
            server_hostname=factory.server_hostname,
        )
        self._handshake_done = False
        #: Application data written before the handshake finished.
        self._held: list[bytes] = []
        self._close_after_handshake = False
        self._error: Optional[Failure] = None
        self._lost = False
        self._aborted = False

    # -- below: the TCP transport ------------------------------------------------

    def makeConnection(self, transport: Any) -> None:
        directlyProvides(self, providedBy(transport))
        self._below: ITCPTransport = transport
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)  # type: ignore[no-untyped-call]
        self.wrappedProtocol.makeConnection(self)
        if not self._lost and not self.disconnecting:
            self._handshake()  # the client's hello goes out now

    def dataReceived(self, data: bytes) -> None:
        if self._error is not None or self._lost:
            return
        self._incoming.write(data)
        if not self._handshake_done:
            self._handshake()
            if not self._handshake_done:
                return
        self._read_plaintext()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        self.factory.unregisterProtocol(self)  # type: ignore[no-untyped-call]
        self.wrappedProtocol.connectionLost(self._error if self._error is not None else reason)

    # -- above: the application's transport ------------------------------------

    def write(self, data: bytes) -> None:
        if not data or self._lost or self._error is not None or self.disconnecting:
            return
        if not self._handshake_done:
            self._held.append(bytes(data))
            return
        try:
            self._tls.write(data)
        except ssl.SSLError as e:
            self._fail(e)
            return
        self._flush()

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Send what is written, then close_notify, then close the TCP connection."""
        if self.disconnecting or self._lost:
            return
        if not self._handshake_done and self._held and self._error is None:
            self._close_after_handshake = True  # the held data goes first
            return
        self.disconnecting = True
        if self._handshake_done and self._error is None:
            try:
                self._tls.unwrap()
            except ssl.SSLError:
                pass  # close_notify is queued; the peer's own is not awaited
            self._flush()
        self._below.loseConnection()

    def abortConnection(self) -> None:
        """Close the TCP connection at once: nothing more is sent or delivered."""
        if self._lost:
            return
        self.disconnecting = True
        self._aborted = True
        self._below.abortConnection()

    def getPeerCertificate(self) -> Optional[bytes]:
        """The peer's certificate (DER), if it sent one and the handshake finished."""
        if not self._handshake_done:
            return None
        return self._tls.getpeercert(binary_form=True)

    # -- the TLS state machine --------------------------------------------------------

    def _handshake(self) -> None:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, ssl.CertificateError) as e:
            self._flush()  # the alert, for the peer's logs
            self._fail(e)
            return
        self._handshake_done = True
        self._flush()
        held, self._held = self._held, []
        for data in held:
            self.write(data)
        if self._close_after_handshake:
            self.loseConnection()

    def _read_plaintext(self) -> None:
        # Until the application closes (it wants nothing more) or the connection fails or ends.
        while not self._lost and self._error is None and not self.disconnecting:
            try:
                data = self._tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # the peer's close_notify
                self._flush()
                if not self.disconnecting:
                    self.disconnecting = True
                    self._below.loseConnection()
                return
            except ssl.SSLError as e:
                self._fail(e)
                return
            if not data:
                break
            self.wrappedProtocol.dataReceived(data)
        if not self._lost:
            self._flush()

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data and not self._lost and not self._aborted:
            self._below.write(data)

    def _fail(self, error: Exception) -> None:
        """Give up on the connection; the application hears ``error`` as the reason it was lost."""
        if self._error is not None:
            return
        logger.info("TLS with %s failed: %s", self._below.getPeer(), error)
        self._error = Failure(error)
        self.disconnecting = True
        self._below.loseConnection()


class TLSFactory(WrappingFactory["TLSProtocol"]):
    """Wraps each connection ``wrapped`` makes or accepts in :class:`TLSProtocol`."""

    protocol = TLSProtocol
    noisy = False  # not a log line per connection

    def __init__(self, wrapped: IProtocolFactory, context: ssl.SSLContext, *, server_side: bool,
                 server_hostname: Optional[str] = None) -> None:
        super().__init__(wrapped)  # type: ignore[no-untyped-call]
        self.context = context
        self.server_side = server_side
        self.server_hostname = server_hostname

    def buildProtocol(self, addr: IAddress) -> Optional[TLSProtocol]:  # type: ignore[override]
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        return TLSProtocol(self, wrapped)


def listen_tls(reactor: Any, port: int, factory: IProtocolFactory, context: ssl.SSLContext,
               interface: str = "") -> IListeningPort:
    """Listen on TCP ``port`` and speak TLS (as a server, with ``context``) on each connection."""
    listening: IListeningPort = reactor.listenTCP(port, TLSFactory(factory, context, server_side=True),
                                                  interface=interface)
    return listening


@implementer(IStreamClientEndpoint)
class TLSClientEndpoint:
    """Connects through ``wrapped`` and speaks TLS to ``server_hostname`` (SNI, and the name checked).

    An IP literal is checked against the certificate's IP addresses and never
    sent as SNI; ``None`` sends no SNI (only with a non-verifying context).
    """

    def __init__(self, wrapped: IStreamClientEndpoint, context: ssl.SSLContext,
                 server_hostname: Optional[str]) -> None:
        self._wrapped = wrapped
        self._context = context
        self._server_hostname = server_hostname

    def connect(self, protocolFactory: IProtocolFactory) -> "defer.Deferred[IProtocol]":
        factory = TLSFactory(protocolFactory, self._context, server_side=False,
                             server_hostname=self._server_hostname)
        d: defer.Deferred[Any] = self._wrapped.connect(factory)
        return d.addCallback(lambda protocol: protocol.wrappedProtocol)


# -- an HTTP(S) agent -----------------------------------------------------------------------


@implementer(IAgentEndpointFactory)
class _OutboundEndpoints:
    def __init__(self, reactor: Any, connect_timeout: float, context: Optional[ssl.SSLContext]) -> None:
        self._reactor = reactor
        self._timeout = connect_timeout
        self._context = context

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        tcp = HostnameEndpoint(self._reactor, uri.host, uri.port, timeout=self._timeout)
        if uri.scheme == b"http":
            return tcp
        if uri.scheme != b"https":
            raise ValueError(f"unsupported URI scheme {uri.scheme!r}")
        host = uri.host.decode("idna")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return TLSClientEndpoint(tcp, self._context or default_client_context(), host)


def outbound_agent(reactor: Any, *, connect_timeout: float = 30, pool: Optional[HTTPConnectionPool] = None,
                   context: Optional[ssl.SSLContext] = None) -> IAgent:
    """An ``IAgent`` for ``http`` and ``https`` URIs; HTTPS checks certificates (``context`` to change that)."""
    agent: IAgent = Agent.usingEndpointFactory(reactor, _OutboundEndpoints(reactor, connect_timeout, context),
                                               pool=pool)
    return agent
