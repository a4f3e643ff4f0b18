"""Which IP addresses outbound federation may connect to.

Without a filter, a remote server name (or its ``.well-known`` or SRV
records) could point us at hosts on our own network. Every address we are
about to connect to, literal or resolved, is checked here: refused if it is
in a blacklisted range, unless a whitelisted range also contains it. The
unspecified addresses (``0.0.0.0``, ``::``) are always refused, and
IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
from typing import Sequence, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_ALWAYS_REFUSED: tuple[IPNetwork, ...] = (ipaddress.ip_network("0.0.0.0/32"), ipaddress.ip_network("::/128"))


class IPRangeFilter:
    def __init__(self, blacklist: Sequence[IPNetwork], whitelist: Sequence[IPNetwork] = ()) -> None:
        self._blacklist = tuple(blacklist)
        self._whitelist = tuple(whitelist)

    def is_allowed(self, address: str) -> bool:
        """Whether we may connect to ``address`` (an IP literal, no brackets); False if it is not one."""
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in _ALWAYS_REFUSED if net.version == ip.version):
            return False
        if not any(ip in net for net in self._blacklist if net.version == ip.version):
            return True
        return any(ip in net for net in self._whitelist if net.version == ip.version)


class IPBlacklistedError(ConnectionError):
    """Every address of a destination is in a refused range."""
