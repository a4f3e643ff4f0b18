"""The federation settings: key servers, outbound TLS and IP filtering, what we serve to other servers.

Key names follow Synapse's homeserver.yaml so existing configs carry over:

* ``trusted_key_servers``: notaries asked for keys we cannot fetch from the
  server itself: ``[{server_name: ..., verify_keys: {"ed25519:abc": "<base64>"}}]``.
  Without ``verify_keys`` the notary's own keys are fetched from it directly.
  Default: none (we do not trust any notary unless told to).
* ``key_refresh_interval``: how long the keys we publish stay valid (default 1d).
* ``old_signing_keys``: keys we used to sign with,
  ``{"ed25519:old": {key: "<base64 public key>", expired_ts: <ms>}}``.
* ``federation_verify_certificates`` (default true) and
  ``federation_certificate_verification_whitelist`` (host globs never verified).
* ``ip_range_blacklist`` (default: private, loopback, link-local and reserved
  ranges), ``ip_range_whitelist`` (exceptions to it) and the older
  ``federation_ip_range_blacklist`` (if set, replaces ``ip_range_blacklist``
  for federation). ``0.0.0.0`` and ``::`` are always refused.
* ``federation_domain_whitelist``: if set, the only servers we federate with.
* ``allow_profile_lookup_over_federation`` (default true),
  ``allow_public_rooms_over_federation`` (default false).
* ``federation.{client_timeout, max_short_retries, max_short_retry_delay,
  max_long_retries, max_long_retry_delay}``: the outbound HTTP client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Optional, Union

import attrs
from signedjson.types import VerifyKey

from matrixd.api.errors import ConfigError
from matrixd.config._reader import ConfigReader
from matrixd.crypto.keys import KeyFileError, decode_verify_key
from matrixd.crypto.server_keys import OldKey
from matrixd.types import is_valid_server_name

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

#: Ranges no server on the public internet uses (RFC 6890 and friends): refused by default.
DEFAULT_IP_RANGE_BLACKLIST: tuple[str, ...] = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
)


@attrs.frozen(slots=True)
class TrustedKeyServer:
    """A notary: its name and, if configured, the keys its signatures must verify with."""

    server_name: str
    # Empty: the notary's keys are fetched from the notary itself.
    verify_keys: Mapping[str, VerifyKey] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class FederationClientSettings:
    """The outbound HTTP client: per-attempt timeout and retry schedule (milliseconds)."""

    client_timeout_ms: int = 60_000
    # Retries of idempotent requests (GET) by default, and the cap on their backoff.
    max_short_retries: int = 3
    max_short_retry_delay_ms: int = 2_000
    # Retries when a caller asks for long retries (requests that must get through).
    max_long_retries: int = 10
    max_long_retry_delay_ms: int = 60_000


@attrs.frozen(slots=True)
class DestinationRetrySettings:
    """How long a destination that failed a transaction is left alone (milliseconds).

    Synapse's ``federation.destination_*`` keys: the first failure waits the
    minimum, each next one ``multiplier`` times longer, never more than the maximum.
    """

    min_interval_ms: int = 10_000
    multiplier: float = 2.0
    max_interval_ms: int = 24 * 3600 * 1000


@attrs.frozen(slots=True)
class FederationConfig:
    trusted_key_servers: tuple[TrustedKeyServer, ...] = ()
    key_refresh_interval_ms: int = 86_400_000
    old_signing_keys: Mapping[str, OldKey] = attrs.field(factory=dict)
    verify_certificates: bool = True
    certificate_verification_whitelist: tuple[str, ...] = ()
    ip_range_blacklist: tuple[IPNetwork, ...] = ()
    ip_range_whitelist: tuple[IPNetwork, ...] = ()
    # None: federate with everyone.
    domain_whitelist: Optional[frozenset[str]] = None
    allow_profile_lookup: bool = True
    allow_public_rooms: bool = False
    # Synapse's send_federation: False when a federation_sender worker sends (or nobody should).
    send_federation: bool = True
    client: FederationClientSettings = FederationClientSettings()
    destination_retry: DestinationRetrySettings = DestinationRetrySettings()

    @classmethod
    def parse(cls, r: ConfigReader) -> "FederationConfig":
        refresh = r.duration_ms("key_refresh_interval", "1d")
        assert refresh is not None
        if refresh < 3_600_000:
            # The spec asks key servers not to hand out responses expiring within the hour.
            raise ConfigError("key_refresh_interval", "must be at least 1h")

        blacklist_key = "federation_ip_range_blacklist" if r.has("federation_ip_range_blacklist") else "ip_range_blacklist"
        if blacklist_key == "federation_ip_range_blacklist":
            r.raw("ip_range_blacklist")  # read, so it is not reported as unknown
        whitelist = r.raw("federation_domain_whitelist")
        if whitelist is not None:
            names = r.string_list("federation_domain_whitelist")
            domain_whitelist: Optional[frozenset[str]] = frozenset(names)
        else:
            domain_whitelist = None

        return cls(
            trusted_key_servers=_parse_trusted_key_servers(r),
            key_refresh_interval_ms=refresh,
            old_signing_keys=_parse_old_signing_keys(r),
            verify_certificates=r.boolean("federation_verify_certificates", True),
            certificate_verification_whitelist=r.string_list("federation_certificate_verification_whitelist"),
            ip_range_blacklist=_parse_networks(r, blacklist_key, DEFAULT_IP_RANGE_BLACKLIST),
            ip_range_whitelist=_parse_networks(r, "ip_range_whitelist", ()),
            domain_whitelist=domain_whitelist,
            allow_profile_lookup=r.boolean("allow_profile_lookup_over_federation", True),
            allow_public_rooms=r.boolean("allow_public_rooms_over_federation", False),
            send_federation=r.boolean("send_federation", True),
            client=_parse_client(r.section("federation")),
            destination_retry=_parse_destination_retry(r.section("federation")),
        )


def _parse_networks(r: ConfigReader, name: str, default: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    out = []
    for i, cidr in enumerate(r.string_list(name, default)):
        try:
            out.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{r.key(name)}[{i}]", f"{cidr!r} is not an IP address or CIDR range") from None
    return tuple(out)


def _parse_trusted_key_servers(r: ConfigReader) -> tuple[TrustedKeyServer, ...]:
    servers = []
    for entry in r.section_list("trusted_key_servers"):
        name = entry.required_string("server_name")
        if not is_valid_server_name(name):
            raise ConfigError(entry.key("server_name"), f"{name!r} is not a valid server name")
        keys: dict[str, VerifyKey] = {}
        raw_keys = entry.raw("verify_keys", {})
        if not isinstance(raw_keys, Mapping):
            raise ConfigError(entry.key("verify_keys"), "must be a mapping of key id to base64 public key")
        for key_id, key_b64 in raw_keys.items():
            if not isinstance(key_id, str) or not isinstance(key_b64, str):
                raise ConfigError(entry.key("verify_keys"), "must map key ids to base64 strings")
            try:
                keys[key_id] = decode_verify_key(key_id, key_b64)
            except KeyFileError as e:
                raise ConfigError(f"{entry.key('verify_keys')}.{key_id}", str(e)) from None
        entry.raw("accept_keys_insecurely")  # Synapse's opt-out; we always verify what we can
        servers.append(TrustedKeyServer(name, keys))
    return tuple(servers)


def _parse_old_signing_keys(r: ConfigReader) -> dict[str, OldKey]:
    raw = r.raw("old_signing_keys", {})
    if not isinstance(raw, Mapping):
        raise ConfigError(r.key("old_signing_keys"), "must be a mapping of key id to {key, expired_ts}")
    section = ConfigReader(raw, r.key("old_signing_keys"))
    out: dict[str, OldKey] = {}
    for key_id in raw:
        entry = section.section(str(key_id))
        try:
            verify_key = decode_verify_key(str(key_id), entry.required_string("key"))
        except KeyFileError as e:
            raise ConfigError(section.key(str(key_id)), str(e)) from None
        expired_ts = entry.integer("expired_ts", required=True, min_value=0)
        out[str(key_id)] = OldKey(verify_key, expired_ts)
    return out


def _parse_client(s: ConfigReader) -> FederationClientSettings:
    timeout = s.duration_ms("client_timeout", "60s")
    short_delay = s.duration_ms("max_short_retry_delay", "2s")
    long_delay = s.duration_ms("max_long_retry_delay", "60s")
    assert timeout is not None and short_delay is not None and long_delay is not None
    if timeout < 1000:
        raise ConfigError(s.key("client_timeout"), "must be at least 1s")
    return FederationClientSettings(
        client_timeout_ms=timeout,
        max_short_retries=s.integer("max_short_retries", 3, min_value=0, max_value=100),
        max_short_retry_delay_ms=short_delay,
        max_long_retries=s.integer("max_long_retries", 10, min_value=0, max_value=100),
        max_long_retry_delay_ms=long_delay,
    )


def _parse_destination_retry(s: ConfigReader) -> DestinationRetrySettings:
    min_ms = s.duration_ms("destination_min_retry_interval", "10s")
    max_ms = s.duration_ms("destination_max_retry_interval", "1d")
    assert min_ms is not None and max_ms is not None
    if min_ms < 1000:
        raise ConfigError(s.key("destination_min_retry_interval"), "must be at least 1s")
    if max_ms < min_ms:
        raise ConfigError(s.key("destination_max_retry_interval"),
                          "must not be shorter than destination_min_retry_interval")
    return DestinationRetrySettings(
        min_interval_ms=min_ms,
        multiplier=s.number("destination_retry_multiplier", 2.0, min_value=1.0, max_value=100.0),
        max_interval_ms=max_ms,
    )
