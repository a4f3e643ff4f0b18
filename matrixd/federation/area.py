"""The federation foundation of one process, built once with explicit arguments.

``build_federation_area`` wires: our key response (``LocalServerKeys``), the
key store and ``Keyring``, the outbound ``MatrixFederationClient`` on a
``MatrixFederationAgent`` (discovery, TLS policy, IP filter, a lazily built
``twisted.names`` resolver), the notary, the inbound
``FederationAuthenticator``, server ACLs, server visibility, the read handler
and the client for other servers' room directories. The servlets are registered by the role's wiring
(``matrixd.app.master``).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import attrs
from signedjson.types import SigningKey
from twisted.internet.interfaces import IResolver
from twisted.web.iweb import IAgent

from matrixd.config.federation import FederationConfig
from matrixd.config.ratelimiting import FederationRatelimitSettings
from matrixd.crypto.keyring import Keyring
from matrixd.crypto.notary import KeyNotary
from matrixd.crypto.server_keys import LocalServerKeys
from matrixd.federation.acl import ServerAclChecker
from matrixd.federation.discovery import DnsLookups, LazyResolver, ServerNameResolver
from matrixd.federation.ip_filter import IPRangeFilter
from matrixd.federation.public_rooms import FederationRoomDirectoryClient
from matrixd.federation.read_handler import FederationReadHandler
from matrixd.federation.software import server_version
from matrixd.federation.tls import FederationTLSPolicy
from matrixd.federation.transport.agent import MatrixFederationAgent, TargetConnector, https_agent
from matrixd.federation.transport.client import MatrixFederationClient
from matrixd.federation.transport.server import FederationAuthenticator
from matrixd.federation.visibility import ServerVisibility
from matrixd.federation.well_known import WellKnownResolver
from matrixd.handlers.federation_ratelimit import FederationRateLimiter
from matrixd.storage.aliases import AliasStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.database import Database
from matrixd.storage.events import EventStore
from matrixd.storage.partial_state import PartialStateStore
from matrixd.storage.profiles import ProfileStore
from matrixd.storage.rooms import RoomStore
from matrixd.storage.server_keys import ServerKeyStore
from matrixd.storage.state import StateGroupStore
from matrixd.util.clock import Clock


@attrs.define
class FederationArea:
    config: FederationConfig
    local_keys: LocalServerKeys
    key_store: ServerKeyStore
    # The production transport under ``client`` (closed at shutdown).
    agent: MatrixFederationAgent
    client: MatrixFederationClient
    keyring: Keyring
    notary: KeyNotary
    authenticator: FederationAuthenticator
    acl: ServerAclChecker
    visibility: ServerVisibility
    reader: FederationReadHandler
    # For RoomDirectoryHandler(remote=...): other servers' directories.
    remote_directory: FederationRoomDirectoryClient
    # Plain HTTPS through the federation connector (IP filter, TLS policy): media ``Location`` redirects.
    https_agent: Optional[IAgent] = None


def _system_resolver(reactor: Any) -> Callable[[], IResolver]:
    def build() -> IResolver:
        from twisted.names import cache, client, hosts, resolve

        # The chain client.createResolver builds, but on our reactor rather than the global one.
        chain = [
            hosts.Resolver(b"/etc/hosts"),
            cache.CacheResolver(reactor=reactor),
            client.Resolver(resolv="/etc/resolv.conf", reactor=reactor),
        ]
        resolver: IResolver = resolve.ResolverChain(chain)
        return resolver

    return build


def build_federation_area(
    *,
    config: FederationConfig,
    reactor: Any,
    clock: Clock,
    db: Database,
    server_name: str,
    signing_key: SigningKey,
    events: EventStore,
    state: StateGroupStore,
    current_state: CurrentStateStore,
    rooms: RoomStore,
    aliases: AliasStore,
    profiles: ProfileStore,
    dns_resolver: Optional[Callable[[], IResolver]] = None,
    tls_policy: Optional[FederationTLSPolicy] = None,
    ratelimit: Optional[FederationRatelimitSettings] = None,
) -> FederationArea:
    """Everything federation needs, for one process (see the module docstring).

    ``dns_resolver`` (a factory, called on first use) and ``tls_policy``
    replace the system resolver and the config's TLS policy (tests).
    ``ratelimit`` (``rc_federation``) limits inbound requests per origin (None: unlimited).
    """
    user_agent = f"matrixd/{server_version()}"
    local_keys = LocalServerKeys(clock, server_name, signing_key, config.old_signing_keys,
                                 config.key_refresh_interval_ms)
    key_store = ServerKeyStore(db, clock)

    dns = DnsLookups(LazyResolver(dns_resolver or _system_resolver(reactor)))
    ip_filter = IPRangeFilter(config.ip_range_blacklist, config.ip_range_whitelist)
    tls = tls_policy or FederationTLSPolicy(config.verify_certificates, config.certificate_verification_whitelist)
    connector = TargetConnector(reactor, dns, ip_filter, tls)
    web_agent = https_agent(reactor, connector)
    well_known = WellKnownResolver(clock, web_agent, user_agent=user_agent.encode())
    agent = MatrixFederationAgent(reactor, ServerNameResolver(well_known, dns), connector)
    client = MatrixFederationClient(
        clock, server_name=server_name, signing_key=signing_key, agent=agent, settings=config.client,
        domain_whitelist=config.domain_whitelist, user_agent=user_agent,
    )
    keyring = Keyring(
        clock, local_keys, key_store, client,
        [(notary.server_name, notary.verify_keys) for notary in config.trusted_key_servers],
    )
    acl = ServerAclChecker(current_state)
    visibility = ServerVisibility(events, state, current_state)
    reader = FederationReadHandler(
        clock=clock, server_name=server_name, events=events, state=state, rooms=rooms, aliases=aliases,
        profiles=profiles, visibility=visibility, acl=acl, allow_profile_lookup=config.allow_profile_lookup,
        partial_state=PartialStateStore(db, clock),
    )
    return FederationArea(
        config=config,
        local_keys=local_keys,
        key_store=key_store,
        agent=agent,
        client=client,
        keyring=keyring,
        notary=KeyNotary(clock, local_keys, key_store, keyring),
        authenticator=FederationAuthenticator(
            clock, server_name, keyring, config.domain_whitelist,
            ratelimiter=FederationRateLimiter(clock, ratelimit) if ratelimit is not None else None,
        ),
        acl=acl,
        visibility=visibility,
        reader=reader,
        remote_directory=FederationRoomDirectoryClient(client),
        https_agent=web_agent,
    )
