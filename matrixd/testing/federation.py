"""Federation test doubles that run the real code: an in-memory network and fake remote homeservers.

``FederationNetwork`` is a switchboard of ``MatrixSite``s by server name. Its
``agent`` is an ``IAgent`` for ``matrix-federation://`` URIs that speaks real
HTTP/1.1 (Twisted's client and server protocols) over in-memory connections
whose bytes are delivered on the next turn of the fake reactor. Put it under a
``MatrixFederationClient`` and every signed request, key fetch, retry and
timeout runs as in production, minus DNS, TLS and sockets.

``FakeRemoteServer`` is another homeserver on that network: its own server
name and signing key, serving its real key response
(``/_matrix/key/v2/server``), with its own client, keyring and X-Matrix
authenticator, so it can sign requests to the server under test and check
the requests it receives.

Example::

    hs = make_homeserver(self)
    network = install_federation_network(hs)          # hs's client now uses the network
    remote = FakeRemoteServer(network, "remote.test")
    channel = remote.request(hs, "GET", "/_matrix/federation/v1/version")   # signed, via hs.request
    remote.handle("PUT", "/_matrix/federation/v1/send/(?P<txn_id>[^/]*)", on_send)
    network.run(hs.components.federation.client.put_json("remote.test", "/_matrix/federation/v1/send/1", {...}))

Everything shares the test's fake reactor: drive it with ``network.run(coro)``
(or ``channel.await_result()`` for requests made through ``hs.request``).
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable, Collection, Coroutine, Iterable, Mapping, Optional, TypeVar, cast

import attrs
from signedjson.types import SigningKey
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import (
    IConsumer,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.client import URI, Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IBodyProducer, IResponse
from zope.interface import implementer

from matrixd.crypto.keyring import Keyring
from matrixd.crypto.keys import encode_verify_key, generate_signing_key
from matrixd.crypto.notary import KeyNotary
from matrixd.crypto.request_auth import sign_request
from matrixd.crypto.server_keys import FetchedKey, JsonDict, LocalServerKeys, OldKey, StoredKeyJson
from matrixd.events.hashing import add_content_hash
from matrixd.events.room_versions import RoomVersion
from matrixd.events.signing import sign_event_dict
from matrixd.federation.transport.client import MatrixFederationClient
from matrixd.federation.transport.server import FederationAuthenticator
from matrixd.http.request import MatrixRequest, MatrixSite
from matrixd.http.server import JsonResource, ServletResult
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.rest.key.query import RemoteKeyServlet
from matrixd.rest.key.server import LocalKeyServlet
from matrixd.testing.http import FakeChannel, make_site
from matrixd.util.clock import Clock

T = TypeVar("T")


# ---------------------------------------------------------------------------
# In-memory connections
# ---------------------------------------------------------------------------


@implementer(ITransport, IConsumer, IPushProducer)
class _LoopbackTransport:
    """One end of an in-memory TCP connection; writes arrive at the peer on the next reactor turn."""

    def __init__(self, reactor: MemoryReactorClock, protocol: IProtocol, host: IPv4Address, peer: IPv4Address) -> None:
        self._reactor = reactor
        self.protocol = protocol
        self._host = host
        self._peer = peer
        self.other: Optional[_LoopbackTransport] = None
        self.disconnecting = False
        self.disconnected = False
        self.producer: Any = None

    # ITransport
    def write(self, data: bytes) -> None:
        if self.disconnecting or not data:
            return
        self._reactor.callLater(0, self._deliver, data)

    def writeSequence(self, seq: Iterable[bytes]) -> None:
        self.write(b"".join(seq))

    def _deliver(self, data: bytes) -> None:
        other = self.other
        if other is not None and not other.disconnected:
            other.protocol.dataReceived(data)

    def loseConnection(self) -> None:
        if self.disconnecting:
            return
        self.disconnecting = True
        self._reactor.callLater(0, self._close, ConnectionDone("closed"))

    def abortConnection(self) -> None:
        self.disconnecting = True
        self._close(ConnectionDone("aborted"))

    def _close(self, reason: Exception) -> None:
        for end in (self, self.other):
            if end is not None and not end.disconnected:
                end.disconnected = True
                end.disconnecting = True
                end.protocol.connectionLost(Failure(reason))

    def getPeer(self) -> IPv4Address:
        return self._peer

    def getHost(self) -> IPv4Address:
        return self._host

    # TCP niceties the HTTP protocols call
    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def setTcpKeepAlive(self, enabled: bool) -> None:
        pass

    def getTcpNoDelay(self) -> bool:
        return True

    def getTcpKeepAlive(self) -> bool:
        return False

    # IConsumer
    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer
        if not streaming:
            producer.resumeProducing()

    def unregisterProducer(self) -> None:
        self.producer = None

    # IPushProducer (the transport produces the bytes its protocol receives)
    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.loseConnection()


@implementer(IStreamClientEndpoint)
class _InMemoryEndpoint:
    def __init__(self, network: "FederationNetwork", server_name: str) -> None:
        self._network = network
        self._server_name = server_name

    def connect(self, protocolFactory: IProtocolFactory) -> "defer.Deferred[IProtocol]":
        site = self._network.site_for(self._server_name)
        if site is None:
            return defer.fail(ConnectionRefusedError(f"no server {self._server_name} on the test network"))
        reactor = self._network.reactor
        port = self._network.next_port()
        client_addr = IPv4Address("TCP", "127.0.0.1", port)
        server_addr = IPv4Address("TCP", "127.0.0.1", 8448)
        client = protocolFactory.buildProtocol(server_addr)
        server_factory: Any = site
        server = server_factory.buildProtocol(client_addr)
        assert client is not None and server is not None
        client_end = _LoopbackTransport(reactor, client, client_addr, server_addr)
        server_end = _LoopbackTransport(reactor, server, server_addr, client_addr)
        client_end.other, server_end.other = server_end, client_end
        server.makeConnection(cast(ITransport, server_end))
        client.makeConnection(cast(ITransport, client_end))
        self._network.connections += 1
        return defer.succeed(client)


@implementer(IAgent, IAgentEndpointFactory)
class _NetworkAgent:
    """``IAgent`` for ``matrix-federation://<server name>/...`` over the network's in-memory connections."""

    def __init__(self, network: "FederationNetwork") -> None:
        self._network = network
        pool = HTTPConnectionPool(network.reactor, persistent=False)
        self._agent = Agent.usingEndpointFactory(network.reactor, self, pool=pool)

    def request(
        self, method: bytes, uri: bytes, headers: Optional[Headers] = None,
        bodyProducer: Optional[IBodyProducer] = None,
    ) -> "defer.Deferred[IResponse]":
        parsed = URI.fromBytes(uri)
        headers = headers.copy() if headers is not None else Headers()
        headers.setRawHeaders(b"Host", [parsed.netloc])
        self._network.requests_sent.append((method.decode(), uri.decode()))
        d: defer.Deferred[IResponse] = self._agent.request(method, uri, headers, bodyProducer)
        return d

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        return _InMemoryEndpoint(self._network, uri.netloc.decode("ascii"))


class FederationNetwork:
    """In-memory federation between test servers, by server name (see the module docstring)."""

    def __init__(self, reactor: MemoryReactorClock) -> None:
        self.reactor = reactor
        self._sites: dict[str, MatrixSite] = {}
        self._port = 40000
        self.connections = 0
        #: ``(method, uri)`` of every request sent through ``agent``.
        self.requests_sent: list[tuple[str, str]] = []
        self.agent: IAgent = _NetworkAgent(self)

    def add_server(self, server_name: str, site: MatrixSite) -> None:
        self._sites[server_name] = site

    def remove_server(self, server_name: str) -> None:
        """Take a server off the network (connections to it are refused)."""
        self._sites.pop(server_name, None)

    def site_for(self, server_name: str) -> Optional[MatrixSite]:
        return self._sites.get(server_name)

    def next_port(self) -> int:
        self._port += 1
        return self._port

    def run(self, coro: Awaitable[T], timeout: float = 120.0) -> T:
        """Run ``coro`` to completion, advancing the fake clock in 0.1s steps (AssertionError on timeout)."""
        d: defer.Deferred[T] = defer.ensureDeferred(_as_coroutine(coro))
        self.reactor.advance(0)
        waited = 0.0
        while not d.called:
            if waited >= timeout:
                d.cancel()
                raise AssertionError(f"not done within {timeout}s of fake time")
            self.reactor.advance(0.1)
            waited += 0.1
        results: list[Any] = []
        d.addBoth(results.append)
        result = results[0]
        if isinstance(result, Failure):
            result.raiseException()
        return result  # type: ignore[no-any-return]


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def install_federation_network(hs: Any) -> FederationNetwork:
    """Put a ``TestHomeserver`` on a new network: its site is reachable, its client uses the network."""
    network = FederationNetwork(hs.reactor)
    network.add_server(hs.server_name, hs.site)
    hs.components.federation.client.agent = network.agent
    return network


# ---------------------------------------------------------------------------
# A fake remote homeserver
# ---------------------------------------------------------------------------


class InMemoryKeyStore:
    """A ``matrixd.crypto.keyring.KeyStore`` in dicts (for fake servers without a database)."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], FetchedKey] = {}
        self.key_json: dict[tuple[str, str, str], StoredKeyJson] = {}

    async def store_verify_keys(
        self, from_server: str, ts_added_ms: int, keys: Iterable[tuple[str, str, FetchedKey]]
    ) -> None:
        for server, kid, key in keys:
            current = self.keys.get((server, kid))
            if current is None or key.valid_until_ts >= current.valid_until_ts:
                self.keys[(server, kid)] = key

    async def get_verify_keys(self, server_name: str, key_ids: Collection[str]) -> dict[str, FetchedKey]:
        return {kid: self.keys[(server_name, kid)] for kid in key_ids if (server_name, kid) in self.keys}

    async def store_key_json(
        self, server_name: str, from_server: str, ts_added_ms: int, ts_valid_until_ms: int,
        key_ids: Collection[str], key_json: JsonDict,
    ) -> None:
        for kid in key_ids:
            self.key_json[(server_name, kid, from_server)] = StoredKeyJson(
                kid, from_server, ts_added_ms, ts_valid_until_ms, key_json
            )

    async def get_key_json(self, server_name: str, key_ids: Optional[Collection[str]] = None) -> list[StoredKeyJson]:
        rows = [v for (s, kid, _f), v in self.key_json.items() if s == server_name and (key_ids is None or kid in key_ids)]
        return sorted(rows, key=lambda r: (-r.ts_added_ms, r.key_id))


@attrs.frozen(slots=True)
class ReceivedRequest:
    """A request a fake server received and authenticated."""

    method: str
    path: str
    origin: str
    content: Optional[JsonDict]
    path_args: Mapping[str, str]


#: ``handler(origin, content, request, **path_args) -> (status, body)``
RemoteHandler = Callable[..., Coroutine[Any, Any, ServletResult]]


class FakeRemoteServer:
    """A homeserver double on a ``FederationNetwork`` (see the module docstring).

    Args:
        signing_key: its key (a fresh one by default).
        key_valid_for_ms: the ``valid_until_ts`` horizon of its key response.
        old_keys: keys it publishes under ``old_verify_keys``.
        serve_keys: serve its key response (False: tests answer
            ``/_matrix/key/v2/server`` themselves with ``handle_raw``).
    """

    def __init__(
        self,
        network: FederationNetwork,
        server_name: str,
        *,
        signing_key: Optional[SigningKey] = None,
        key_valid_for_ms: int = 24 * 3600 * 1000,
        old_keys: Optional[Mapping[str, OldKey]] = None,
        serve_keys: bool = True,
    ) -> None:
        self.network = network
        self.server_name = server_name
        self.clock = Clock(network.reactor)
        self.signing_key = signing_key or generate_signing_key()
        self.local_keys = LocalServerKeys(self.clock, server_name, self.signing_key, old_keys or {}, key_valid_for_ms)
        self.resource = JsonResource()
        if serve_keys:
            LocalKeyServlet(self.local_keys).register(self.resource)
        self.site = make_site(network.reactor, self.resource)
        network.add_server(server_name, self.site)
        self.client = MatrixFederationClient(
            self.clock, server_name=server_name, signing_key=self.signing_key, agent=network.agent
        )
        self.key_store = InMemoryKeyStore()
        self.keyring = Keyring(self.clock, self.local_keys, self.key_store, self.client)
        self.authenticator = FederationAuthenticator(self.clock, server_name, self.keyring)
        #: Every authenticated request its ``handle`` routes received.
        self.received: list[ReceivedRequest] = []

    # -- identity -------------------------------------------------------------

    @property
    def key_id(self) -> str:
        return self.local_keys.key_id

    @property
    def verify_key_base64(self) -> str:
        return encode_verify_key(self.local_keys.verify_key)

    def key_response(self) -> JsonDict:
        """What it serves at ``/_matrix/key/v2/server`` right now."""
        return self.local_keys.key_response()

    # -- sending --------------------------------------------------------------

    def authorization(self, method: str, destination: str, uri: str, content: Optional[Any] = None) -> bytes:
        """The ``Authorization`` header value for a request to ``destination``."""
        return sign_request(self.signing_key, self.server_name, destination, method, uri, content)

    def request(
        self,
        hs: Any,
        method: str,
        uri: str,
        content: Optional[Any] = None,
        *,
        destination: Optional[str] = None,
        authorization: Optional[bytes] = None,
        await_result: bool = True,
    ) -> FakeChannel:
        """Send a signed request to a ``TestHomeserver`` through its real HTTP stack.

        ``destination`` (default the homeserver's name) is what is signed and
        named in the header; ``authorization`` replaces the header entirely.
        """
        dest = destination if destination is not None else hs.server_name
        header = authorization if authorization is not None else self.authorization(method, dest, uri, content)
        channel: FakeChannel = hs.request(method, uri, content, headers={b"Authorization": header},
                                          await_result=await_result)
        return channel

    # -- receiving ------------------------------------------------------------

    def handle(self, method: str, path_regex: str, handler: Optional[RemoteHandler] = None) -> None:
        """Answer ``method`` on ``path_regex`` (a regex over the raw path, named groups as args).

        Requests are authenticated with the fake's own keyring (fetching the
        sender's key over the network) and recorded in ``received``; the
        handler (default: ``200 {}``) gets ``(origin, content, request, **path_args)``.
        """

        async def callback(request: MatrixRequest, **path_args: str) -> ServletResult:
            content = parse_json_object_from_request(request) if method in ("PUT", "POST") else None
            origin = await self.authenticator.authenticate_request(request, content)
            self.received.append(ReceivedRequest(method, (request.path or b"").decode(), origin, content, path_args))
            if handler is None:
                return 200, {}
            return await handler(origin, content, request, **path_args)

        self.resource.register_paths(method, [re.compile("^" + path_regex + "$")], callback, f"fake:{path_regex}")

    def handle_raw(self, method: str, path_regex: str, handler: Callable[..., Coroutine[Any, Any, ServletResult]]) -> None:
        """Answer without authenticating: ``handler(request, **path_args)`` (for broken-peer tests)."""
        self.resource.register_paths(method, [re.compile("^" + path_regex + "$")], handler, f"raw:{path_regex}")

    def enable_notary(self) -> KeyNotary:
        """Serve ``/_matrix/key/v2/query`` with the real notary, on this server's in-memory key store."""
        notary = KeyNotary(self.clock, self.local_keys, self.key_store, self.keyring)
        RemoteKeyServlet(notary).register(self.resource)
        return notary

    # -- events ---------------------------------------------------------------

    def sign_pdu(self, room_version: RoomVersion, pdu: Mapping[str, Any]) -> JsonDict:
        """``pdu`` with its content hash and this server's signature (as the server would send it)."""
        return sign_event_dict(room_version, add_content_hash(pdu), self.server_name, self.signing_key)

