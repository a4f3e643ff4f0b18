"""Opening the configured listeners: one site per listener, on each bind address.

An http listener serves one ``JsonResource`` holding the servlets of the resource
names it lists (``client``, ``federation``, ...); which servlets each name means
is decided by the role's wiring (``matrixd.app.homeserver``). A metrics listener
serves the Prometheus exposition on every path. A replication listener serves
the master's TCP replication stream to workers (the role passes its factory).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import attrs
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.web.resource import IResource

from matrixd.api.errors import ConfigError
from matrixd.config.listeners import ListenerConfig
from matrixd.config.root import RootConfig
from matrixd.http.request import MatrixRequest, MatrixSite
from matrixd.http.tls import listen_tls, server_context
from matrixd.http.server import JsonResource, RestServlet, prefixed_patterns, respond_with_bytes
from matrixd.metrics.resource import MetricsResource, MetricsServlet

logger = logging.getLogger(__name__)

# Servlets for each resource name, built once per process by the role's wiring.
ServletGroups = Mapping[str, Sequence[RestServlet]]


class HealthServlet(RestServlet):
    """``GET /health``: 200 ``OK`` while the process serves requests (for load balancers)."""

    PATTERNS = prefixed_patterns("", "/health")

    async def on_GET(self, request: MatrixRequest) -> None:
        respond_with_bytes(request, 200, b"OK", b"text/plain; charset=utf-8")


# Resource names served by the framework itself, the same for every role (given the server name).
BUILTIN_SERVLETS: Mapping[str, Callable[[Optional[str]], Sequence[RestServlet]]] = {
    "health": lambda _server_name: [HealthServlet()],
    "metrics": lambda server_name: [MetricsServlet(server_name=server_name)],
}


def build_json_resource(resource_names: Sequence[str] | frozenset[str], groups: ServletGroups,
                        server_name: Optional[str] = None) -> JsonResource:
    """A JsonResource with the servlets of every name in ``resource_names``.

    ``server_name`` labels the ``synapse_*`` metrics of a ``metrics`` resource as Synapse does.

    A servlet listed under several names (e.g. authenticated media under both
    ``client`` and ``media``) is registered once.
    """
    resource = JsonResource()
    registered: set[int] = set()
    for name in sorted(resource_names):
        servlets: Sequence[RestServlet]
        if name in BUILTIN_SERVLETS:
            servlets = BUILTIN_SERVLETS[name](server_name)
        else:
            servlets = groups.get(name, ())
        for servlet in servlets:
            if id(servlet) in registered:
                continue
            registered.add(id(servlet))
            servlet.register(resource)
    return resource


def max_body_size_for(listener: ListenerConfig, config: RootConfig) -> int:
    """Media uploads may be larger than any JSON body; only media listeners accept them."""
    limit = config.server.max_request_body_size
    if "media" in listener.resource_names:
        limit = max(limit, config.media.max_upload_size)
    return limit


@attrs.frozen(slots=True)
class BoundListener:
    """A listener that is up: where it actually listens (port 0 becomes a real port)."""

    type: str
    resource_names: tuple[str, ...]
    address: str
    port: int
    listening_port: IListeningPort = attrs.field(eq=False, repr=False)

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "resources": list(self.resource_names),
            "address": self.address,
            "port": self.port,
        }


def _tls_context(config: RootConfig) -> ssl.SSLContext:
    cert_path = config.listeners.tls_certificate_path
    key_path = config.listeners.tls_private_key_path
    assert cert_path is not None and key_path is not None  # checked when config loaded
    return server_context(cert_path, key_path)


def _http_site(reactor: Any, config: RootConfig, groups: ServletGroups, listener: ListenerConfig,
               index: int) -> MatrixSite:
    root: IResource
    if listener.type == "metrics":
        root = MetricsResource(server_name=config.server.server_name)
        body_limit = 1024
    else:
        root = build_json_resource(listener.resource_names, groups, config.server.server_name)
        body_limit = max_body_size_for(listener, config)
    return MatrixSite(
        root,
        reactor,
        max_request_body_size=body_limit,
        x_forwarded=listener.x_forwarded,
        site_tag=f"{listener.type}-{index}",
    )


def start_listeners(
    reactor: Any, config: RootConfig, groups: ServletGroups, replication_factory: Optional[IProtocolFactory] = None
) -> list[BoundListener]:
    """Listen on every configured listener; raises (CannotListenError...) on failure.

    Raises:
        ConfigError: a replication listener is configured but this role serves none.
    """
    bound: list[BoundListener] = []
    tls: Optional[ssl.SSLContext] = None
    for index, listener in enumerate(config.process_listeners):
        site: IProtocolFactory
        if listener.type == "replication":
            if replication_factory is None:
                raise ConfigError(f"listeners[{index}]", "this process does not serve TCP replication")
            site = replication_factory
        else:
            site = _http_site(reactor, config, groups, listener, index)
        for address in listener.bind_addresses:
            port: Any
            if listener.tls:
                if tls is None:
                    tls = _tls_context(config)
                port = listen_tls(reactor, listener.port, site, tls, interface=address)
            else:
                port = reactor.listenTCP(listener.port, site, interface=address)
            actual = port.getHost().port
            names = tuple(sorted(listener.resource_names))
            logger.info(
                "Listening on %s:%d (%s%s)", address, actual, listener.type,
                f": {', '.join(names)}" if names else "",
            )
            bound.append(BoundListener(listener.type, names, address, actual, port))
    return bound
