"""The ``listeners`` section: which ports serve which resources, and TLS files."""

from __future__ import annotations

import ipaddress
from typing import Optional

import attrs

from matrixd.api.errors import ConfigError
from matrixd.config._reader import ConfigReader

# What an http listener can serve (the keys of the ``resources[].names`` lists).
HTTP_RESOURCE_NAMES = frozenset(
    {"client", "federation", "media", "keys", "metrics", "replication", "health"}
)
# "replication": the master's TCP replication stream for workers (no resources).
LISTENER_TYPES = frozenset({"http", "metrics", "replication"})


@attrs.frozen(slots=True)
class ListenerConfig:
    """One listening socket set: ``port`` on each of ``bind_addresses``."""

    port: int
    bind_addresses: tuple[str, ...]
    type: str
    tls: bool = False
    # Trust X-Forwarded-For / X-Forwarded-Proto (the listener sits behind a proxy).
    x_forwarded: bool = False
    # Union of resources[].names; empty for metrics listeners.
    resource_names: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, r: ConfigReader) -> "ListenerConfig":
        port = r.integer("port", required=True, min_value=0, max_value=65535)
        kind = r.string("type", required=True)
        if kind not in LISTENER_TYPES:
            raise ConfigError(r.key("type"), f"must be one of {', '.join(sorted(LISTENER_TYPES))}, not {kind!r}")
        bind_addresses = r.string_list("bind_addresses", ("0.0.0.0",))
        if not bind_addresses:
            raise ConfigError(r.key("bind_addresses"), "must list at least one address")
        for i, address in enumerate(bind_addresses):
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ConfigError(f"{r.key('bind_addresses')}[{i}]", f"{address!r} is not an IP address") from None

        names: set[str] = set()
        resources = r.section_list("resources")
        for res in resources:
            for name in res.string_list("names"):
                if name not in HTTP_RESOURCE_NAMES:
                    raise ConfigError(
                        res.key("names"),
                        f"unknown resource {name!r}; known: {', '.join(sorted(HTTP_RESOURCE_NAMES))}",
                    )
                names.add(name)
            res.raw("compress")  # accepted for compatibility; responses are not compressed
        if kind == "http" and not names:
            raise ConfigError(r.key("resources"), "an http listener must serve at least one resource")
        return cls(
            port=port,
            bind_addresses=bind_addresses,
            type=kind,
            tls=r.boolean("tls", False),
            x_forwarded=r.boolean("x_forwarded", False),
            resource_names=frozenset(names),
        )


@attrs.frozen(slots=True)
class ListenersConfig:
    """Keys: ``listeners``, ``tls_certificate_path``, ``tls_private_key_path``."""

    listeners: tuple[ListenerConfig, ...] = ()
    tls_certificate_path: Optional[str] = None
    tls_private_key_path: Optional[str] = None

    @classmethod
    def parse(cls, r: ConfigReader) -> "ListenersConfig":
        listeners = tuple(ListenerConfig.parse(lr) for lr in r.section_list("listeners"))
        cert = r.string("tls_certificate_path")
        key = r.string("tls_private_key_path")
        seen: dict[tuple[str, int], int] = {}
        for i, listener in enumerate(listeners):
            if listener.tls and (cert is None or key is None):
                missing = "tls_certificate_path" if cert is None else "tls_private_key_path"
                raise ConfigError(missing, f"is required because listeners[{i}] has tls: true")
            if listener.port == 0:
                continue
            for address in listener.bind_addresses:
                if (address, listener.port) in seen:
                    raise ConfigError(
                        f"listeners[{i}].port",
                        f"{address}:{listener.port} is already used by listeners[{seen[(address, listener.port)]}]",
                    )
                seen[(address, listener.port)] = i
        return cls(listeners=listeners, tls_certificate_path=cert, tls_private_key_path=key)
