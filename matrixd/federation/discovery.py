"""Server discovery: from a server name to where to connect, what ``Host`` to send and what certificate to expect.

This is "Resolving server names" of the server-server API, step by step:

1. IP literal: that address, the given port or 8448; ``Host`` is the server
   name; the certificate must be for the IP.
2. hostname with a port: that hostname (A/AAAA) and port; ``Host`` is the
   server name; certificate for the hostname.
3. otherwise ``/.well-known/matrix/server`` (see ``well_known``); a valid
   ``m.server`` delegates to ``<delegated_hostname>[:<delegated_port>]``:
   an IP literal (port or 8448; ``Host`` is the delegated name), a hostname
   with a port (``Host`` ``hostname:port``), else SRV
   ``_matrix-fed._tcp.<delegated_hostname>``, then the deprecated
   ``_matrix._tcp``, else port 8448; ``Host`` and certificate the
   delegated hostname;
4-6. no delegation: SRV ``_matrix-fed._tcp.<hostname>``, then
   ``_matrix._tcp.<hostname>``, else ``<hostname>:8448``; ``Host`` and
   certificate the hostname.

SRV targets are ordered as RFC 2782 says: by priority, then weighted random.
DNS goes through an injected ``twisted.internet.interfaces.IResolver``
(``twisted.names``), so tests answer SRV and address queries themselves.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
from typing import Any, Callable, Optional, Sequence

import attrs
from twisted.internet.interfaces import IResolver
from twisted.names import dns

from matrixd.federation.well_known import WellKnownResolver
from matrixd.types import is_valid_server_name

logger = logging.getLogger(__name__)

DEFAULT_FEDERATION_PORT = 8448
SRV_SERVICES = ("_matrix-fed._tcp", "_matrix._tcp")


@attrs.frozen(slots=True)
class Route:
    """Where a server name leads.

    Attributes:
        host_header: the ``Host`` header to send.
        tls_name: what the certificate must be valid for (sent as SNI unless an IP).
        targets: ``(host, port)`` to try in order; hosts are IP literals
            (no brackets) or hostnames still to be resolved with A/AAAA.
    """

    host_header: str
    tls_name: str
    targets: tuple[tuple[str, int], ...]


def split_server_name(server_name: str) -> tuple[str, Optional[int]]:
    """``(host, port)`` of a server name; IPv6 hosts lose their brackets.

    Raises:
        ValueError: not a server name by the appendix grammar.
    """
    if not is_valid_server_name(server_name):
        raise ValueError(f"{server_name!r} is not a valid server name")
    if server_name.startswith("["):
        host, _, rest = server_name[1:].partition("]")
        port = int(rest[1:]) if rest else None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{server_name!r} has an invalid IPv6 literal") from None
        return host, port
    host, sep, port_text = server_name.rpartition(":")
    if sep:
        return host, int(port_text)
    return server_name, None


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_header(host: str, port: Optional[int]) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


class LazyResolver:
    """Builds the DNS resolver on first use (the system one reads files and starts timers)."""

    def __init__(self, factory: Callable[[], IResolver]) -> None:
        self._factory = factory
        self._resolver: Optional[IResolver] = None

    def get(self) -> IResolver:
        if self._resolver is None:
            self._resolver = self._factory()
        return self._resolver


class DnsLookups:
    """The DNS queries discovery and connecting need: SRV targets and host addresses."""

    def __init__(self, resolver: LazyResolver, rng: Optional[random.Random] = None) -> None:
        self._dns = resolver
        self._rng = rng or random.Random()

    async def lookup_srv(self, name: str) -> list[tuple[str, int]]:
        """SRV targets of ``name`` in RFC 2782 order; empty if there are none (or DNS fails)."""
        try:
            resolver: Any = self._dns.get()
            answers, _auth, _additional = await resolver.lookupService(name)
        except Exception as e:
            logger.debug("SRV lookup of %s: %s", name, e)
            return []
        records = []
        for rr in answers:
            if rr.type != dns.SRV or not isinstance(rr.payload, dns.Record_SRV):
                continue
            payload = rr.payload
            target = str(payload.target).rstrip(".")
            records.append((int(payload.priority), int(payload.weight), target, int(payload.port)))
        if len(records) == 1 and records[0][2] == "":
            return []  # "." : the service is decidedly not available here
        return [(target, port) for _prio, _weight, target, port in self._order(records) if target]

    def _order(self, records: list[tuple[int, int, str, int]]) -> list[tuple[int, int, str, int]]:
        ordered = []
        for priority in sorted({r[0] for r in records}):
            group = [r for r in records if r[0] == priority]
            while group:
                total = sum(r[1] for r in group)
                if total == 0:
                    ordered.extend(group)
                    break
                pick = self._rng.uniform(0, total)
                running = 0
                for i, r in enumerate(group):
                    running += r[1]
                    if running >= pick and r[1] > 0:
                        ordered.append(group.pop(i))
                        break
                else:  # pragma: no cover - float rounding
                    ordered.append(group.pop())
        return ordered

    async def resolve_addresses(self, host: str) -> list[str]:
        """IP addresses of ``host`` (A records first, then AAAA); an IP literal is its own answer."""
        if is_ip_literal(host):
            return [host]
        found: list[str] = []
        resolver: Any = self._dns.get()
        for lookup, rtype in ((resolver.lookupAddress, dns.A), (resolver.lookupIPV6Address, dns.AAAA)):
            try:
                answers, _auth, _additional = await lookup(host)
            except Exception as e:
                logger.debug("address lookup of %s: %s", host, e)
                continue
            for rr in answers:
                if rr.type == rtype:
                    found.append(_address_of(rr.payload))
        return list(dict.fromkeys(found))


class ServerNameResolver:
    def __init__(self, well_known: WellKnownResolver, dns_lookups: DnsLookups) -> None:
        self._well_known = well_known
        self._dns = dns_lookups

    async def resolve(self, server_name: str) -> Route:
        """The route to ``server_name`` (ValueError if it is not a valid server name)."""
        host, port = split_server_name(server_name)
        if is_ip_literal(host):
            return Route(server_name, host, ((host, port or DEFAULT_FEDERATION_PORT),))
        if port is not None:
            return Route(server_name, host, ((host, port),))

        delegated = await self._well_known.get_delegated_server(host)
        if delegated is not None:
            d_host, d_port = split_server_name(delegated)
            if is_ip_literal(d_host):
                return Route(_host_header(d_host, d_port), d_host, ((d_host, d_port or DEFAULT_FEDERATION_PORT),))
            if d_port is not None:
                return Route(_host_header(d_host, d_port), d_host, ((d_host, d_port),))
            return await self._srv_or_default(d_host)
        return await self._srv_or_default(host)

    async def _srv_or_default(self, hostname: str) -> Route:
        for service in SRV_SERVICES:
            targets = await self._dns.lookup_srv(f"{service}.{hostname}")
            if targets:
                return Route(hostname, hostname, tuple(targets))
        return Route(hostname, hostname, ((hostname, DEFAULT_FEDERATION_PORT),))


def _address_of(payload: Any) -> str:
    if isinstance(payload, dns.Record_A):
        return str(payload.dottedQuad())
    return socket.inet_ntop(socket.AF_INET6, payload.address)


def describe_targets(targets: Sequence[tuple[str, int]]) -> str:
    return ", ".join(_host_header(h, p) for h, p in targets)
