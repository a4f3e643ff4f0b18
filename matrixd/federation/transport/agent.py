"""Connections for outbound federation: ``matrix-federation://`` URIs to TLS connections.

``MatrixFederationAgent`` is a Twisted ``IAgent`` for URIs of the form
``matrix-federation://<server name>/<path>``: it runs server discovery
(``matrixd.federation.discovery``), sets the ``Host`` header discovery
decided, and connects through a ``TargetConnector``, which resolves each
target's addresses, refuses filtered IP ranges (``ip_filter``) and wraps the
TCP connection in TLS for the route's certificate name (``tls``).
Connections are pooled per server name.

``https_agent`` builds a plain HTTPS agent with the same connector, for the
``.well-known`` lookups.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.web.client import URI, Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IBodyProducer, IResponse
from zope.interface import implementer

from matrixd.federation.discovery import DnsLookups, Route, ServerNameResolver, describe_targets
from matrixd.federation.ip_filter import IPBlacklistedError, IPRangeFilter
from matrixd.federation.tls import FederationTLSPolicy
from matrixd.storage.cache import LruCache

logger = logging.getLogger(__name__)

FEDERATION_SCHEME = b"matrix-federation"
CONNECT_TIMEOUT_S = 20


class TargetConnector:
    """Opens a TLS connection to the first reachable address of a list of targets."""

    def __init__(
        self,
        reactor: Any,
        dns_lookups: DnsLookups,
        ip_filter: IPRangeFilter,
        tls_policy: FederationTLSPolicy,
        connect_timeout_s: int = CONNECT_TIMEOUT_S,
    ) -> None:
        self._reactor = reactor
        self._dns = dns_lookups
        self._ip_filter = ip_filter
        self._tls = tls_policy
        self._timeout = connect_timeout_s

    async def connect(
        self, targets: Sequence[tuple[str, int]], tls_name: str, factory: IProtocolFactory
    ) -> IProtocol:
        """Connect ``factory`` to the targets in order; the last error if none connects.

        Raises:
            IPBlacklistedError: every address found was refused by the IP filter.
            ConnectionError / twisted ConnectError: nothing could be reached.
        """
        last_error: Optional[BaseException] = None
        refused = 0
        tried = 0
        for host, port in targets:
            addresses = await self._dns.resolve_addresses(host)
            if not addresses:
                last_error = ConnectionError(f"could not resolve {host}")
                continue
            for address in addresses:
                if not self._ip_filter.is_allowed(address):
                    refused += 1
                    logger.info("not connecting to %s (%s): the IP range is refused", host, address)
                    continue
                tried += 1
                endpoint_class = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
                tcp = endpoint_class(self._reactor, address, port, timeout=self._timeout)
                endpoint = self._tls.wrap(tls_name, tcp)
                try:
                    protocol: IProtocol = await endpoint.connect(factory)
                    return protocol
                except Exception as e:
                    logger.info("could not connect to %s (%s:%d): %s", host, address, port, e)
                    last_error = e
        if refused and not tried:
            raise IPBlacklistedError(f"every address of {describe_targets(targets)} is in a refused IP range")
        if last_error is None:
            last_error = ConnectionError(f"no address for {describe_targets(targets)}")
        raise last_error


@implementer(IStreamClientEndpoint)
class _LazyEndpoint:
    """An endpoint whose targets are worked out when it is asked to connect."""

    def __init__(self, connect: Any) -> None:
        self._connect = connect

    def connect(self, protocolFactory: IProtocolFactory) -> "defer.Deferred[IProtocol]":
        return defer.ensureDeferred(self._connect(protocolFactory))


@implementer(IAgent, IAgentEndpointFactory)
class MatrixFederationAgent:
    """``IAgent`` for ``matrix-federation://<server name>/...`` URIs."""

    def __init__(self, reactor: Any, resolver: ServerNameResolver, connector: TargetConnector,
                 pool: Optional[HTTPConnectionPool] = None) -> None:
        self._resolver = resolver
        self._connector = connector
        if pool is None:
            pool = HTTPConnectionPool(reactor, persistent=True)
            pool.maxPersistentPerHost = 5
            pool.cachedConnectionTimeout = 120
            pool.retryAutomatically = False
        self._pool = pool
        self._agent = Agent.usingEndpointFactory(reactor, self, pool=pool)
        # The route last found per server, used when the pool opens a connection.
        self._routes: LruCache[str, Route] = LruCache("federation_routes", 10_000)

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Optional[Headers] = None,
        bodyProducer: Optional[IBodyProducer] = None,
    ) -> "defer.Deferred[IResponse]":
        return defer.ensureDeferred(self._request(method, uri, headers, bodyProducer))

    async def _request(
        self, method: bytes, uri: bytes, headers: Optional[Headers], body: Optional[IBodyProducer]
    ) -> IResponse:
        parsed = URI.fromBytes(uri)
        if parsed.scheme != FEDERATION_SCHEME:
            raise ValueError(f"not a {FEDERATION_SCHEME.decode()} URI: {uri!r}")
        server_name = parsed.netloc.decode("ascii")
        route = await self._resolver.resolve(server_name)
        self._routes.set(server_name, route)
        headers = headers.copy() if headers is not None else Headers()
        headers.setRawHeaders(b"Host", [route.host_header.encode("ascii")])
        response: IResponse = await self._agent.request(method, uri, headers, body)
        return response

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        server_name = uri.netloc.decode("ascii")

        async def connect(factory: IProtocolFactory) -> IProtocol:
            route = self._routes.get(server_name)
            if route is None:
                route = await self._resolver.resolve(server_name)
            return await self._connector.connect(route.targets, route.tls_name, factory)

        return _LazyEndpoint(connect)

    async def close(self) -> None:
        """Close pooled connections (shutdown, tests)."""
        await self._pool.closeCachedConnections()


@implementer(IAgentEndpointFactory)
class _HttpsEndpointFactory:
    def __init__(self, connector: TargetConnector) -> None:
        self._connector = connector

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        if uri.scheme != b"https":
            raise ValueError(f"only https is allowed here, not {uri.scheme!r}")
        host = uri.host.decode("ascii")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        port = int(uri.port)

        async def connect(factory: IProtocolFactory) -> IProtocol:
            return await self._connector.connect([(host, port)], host, factory)

        return _LazyEndpoint(connect)


def https_agent(reactor: Any, connector: TargetConnector) -> IAgent:
    """A plain HTTPS agent that connects through ``connector`` (IP filter and TLS policy apply)."""
    pool = HTTPConnectionPool(reactor, persistent=False)
    agent: IAgent = Agent.usingEndpointFactory(reactor, _HttpsEndpointFactory(connector), pool=pool)
    return agent
