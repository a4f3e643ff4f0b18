"""Application service registration files: parsing, validation and namespace matching.

A registration (spec: "Registration") tells the homeserver where a service
listens (``url``, or null for a service that only uses the client API), the two
tokens (``as_token`` the service presents to us, ``hs_token`` we present to it),
its bot user (``sender_localpart``) and the users, aliases and room ids it is
interested in (``namespaces``), optionally exclusively.

Namespace regexes must match the whole id (``re.fullmatch``): the spec says a
namespace's regex "defines which values this namespace includes", and a prefix
match would let ``@bot`` claim ``@botnet``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Iterable, Optional

import attrs

from matrixd.api.errors import ConfigError

NAMESPACE_KINDS = ("users", "aliases", "rooms")
#: The unstable (MSC2409) name of ``receive_ephemeral`` that deployed bridges still write.
MSC2409_EPHEMERAL = "de.sorunome.msc2409.push_ephemeral"
#: MSC3202: device masquerading and encryption-related data for the service.
MSC3202 = "org.matrix.msc3202"
#: MSC4203 / MSC2409 to-device delivery opt-in.
MSC4203_TO_DEVICE = "org.matrix.msc4203.receive_to_device"


@attrs.frozen(slots=True)
class Namespace:
    regex: re.Pattern[str]
    exclusive: bool

    def matches(self, value: str) -> bool:
        return self.regex.fullmatch(value) is not None


@attrs.frozen(slots=True)
class AppServiceRegistration:
    """One service, as its registration file declares it (immutable; built at config load)."""

    id: str
    url: Optional[str]
    as_token: str
    hs_token: str
    sender_localpart: str
    users: tuple[Namespace, ...] = ()
    aliases: tuple[Namespace, ...] = ()
    rooms: tuple[Namespace, ...] = ()
    rate_limited: bool = True
    protocols: tuple[str, ...] = ()
    receive_ephemeral: bool = False
    msc3202: bool = False
    receive_to_device: bool = False
    source: str = ""

    def sender(self, server_name: str) -> str:
        """The service's own bot user, which exists implicitly."""
        return f"@{self.sender_localpart}:{server_name}"

    def is_interested_in_user(self, user_id: str) -> bool:
        return _any_match(self.users, user_id)

    def is_exclusive_user(self, user_id: str) -> bool:
        return _any_match((n for n in self.users if n.exclusive), user_id)

    def is_interested_in_alias(self, alias: str) -> bool:
        return _any_match(self.aliases, alias)

    def is_exclusive_alias(self, alias: str) -> bool:
        return _any_match((n for n in self.aliases if n.exclusive), alias)

    def is_interested_in_room_id(self, room_id: str) -> bool:
        return _any_match(self.rooms, room_id)

    def can_act_as(self, user_id: str, server_name: str) -> bool:
        """Whether the service may masquerade as (or register) ``user_id``: its sender or a user namespace."""
        return user_id == self.sender(server_name) or self.is_interested_in_user(user_id)


def _any_match(namespaces: Iterable[Namespace], value: str) -> bool:
    return any(n.matches(value) for n in namespaces)


def _string(raw: Mapping[str, Any], key: str, where: str, *, nullable: bool = False) -> Optional[str]:
    if key not in raw:
        raise ConfigError(f"{where}.{key}", "is required" + (" (null for none)" if nullable else ""))
    value = raw[key]
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}", f"must be a non-empty string, not {value!r}")
    return value


def _bool(raw: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}", f"must be true or false, not {value!r}")
    return value


def _namespaces(raw: Any, kind: str, where: str) -> tuple[Namespace, ...]:
    key = f"{where}.namespaces.{kind}"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(key, f"must be a list of {{regex, exclusive}} mappings, not {raw!r}")
    out = []
    for i, entry in enumerate(raw):
        k = f"{key}[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(k, f"must be a mapping with 'regex' and 'exclusive', not {entry!r}")
        regex = entry.get("regex")
        if not isinstance(regex, str) or not regex:
            raise ConfigError(f"{k}.regex", f"must be a non-empty string, not {regex!r}")
        try:
            compiled = re.compile(regex)
        except re.error as e:
            raise ConfigError(f"{k}.regex", f"{regex!r} is not a valid regular expression: {e}") from None
        exclusive = entry.get("exclusive")
        if not isinstance(exclusive, bool):
            raise ConfigError(f"{k}.exclusive", f"is required and must be true or false, not {exclusive!r}")
        out.append(Namespace(compiled, exclusive))
    return tuple(out)


def parse_registration(raw: Any, source: str) -> AppServiceRegistration:
    """Validate one registration mapping; ``source`` (the file name) prefixes every error key.

    Raises:
        ConfigError: naming the bad key, e.g. ``bridge.yaml: namespaces.users[0].regex``.
    """
    where = source
    if not isinstance(raw, Mapping):
        raise ConfigError(where, "an application service registration must be a YAML mapping")
    service_id = _string(raw, "id", where)
    url = _string(raw, "url", where, nullable=True)
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.url", f"must be an http:// or https:// URL, not {url!r}")
    as_token = _string(raw, "as_token", where)
    hs_token = _string(raw, "hs_token", where)
    sender = _string(raw, "sender_localpart", where)
    assert service_id is not None and as_token is not None and hs_token is not None and sender is not None
    if as_token == hs_token:
        raise ConfigError(f"{where}.hs_token", "must differ from as_token")
    if ":" in sender or sender.startswith("@"):
        raise ConfigError(f"{where}.sender_localpart", f"must be a localpart (no '@' or ':'), not {sender!r}")
    namespaces = raw.get("namespaces")
    if namespaces is None:
        namespaces = {}
    if not isinstance(namespaces, Mapping):
        raise ConfigError(f"{where}.namespaces", f"must be a mapping of users/aliases/rooms, not {namespaces!r}")
    for kind in namespaces:
        if kind not in NAMESPACE_KINDS:
            raise ConfigError(f"{where}.namespaces.{kind}", "unknown namespace (users, aliases or rooms)")
    protocols = raw.get("protocols")
    if protocols is None:
        protocols = []
    if not isinstance(protocols, list) or not all(isinstance(p, str) and p for p in protocols):
        raise ConfigError(f"{where}.protocols", f"must be a list of protocol names, not {protocols!r}")
    ephemeral = _bool(raw, "receive_ephemeral", where, False) or _bool(raw, MSC2409_EPHEMERAL, where, False)
    return AppServiceRegistration(
        id=service_id,
        url=url,
        as_token=as_token,
        hs_token=hs_token,
        sender_localpart=sender,
        users=_namespaces(namespaces.get("users"), "users", where),
        aliases=_namespaces(namespaces.get("aliases"), "aliases", where),
        rooms=_namespaces(namespaces.get("rooms"), "rooms", where),
        rate_limited=_bool(raw, "rate_limited", where, True),
        protocols=tuple(protocols),
        receive_ephemeral=ephemeral,
        msc3202=_bool(raw, MSC3202, where, False),
        receive_to_device=_bool(raw, MSC4203_TO_DEVICE, where, False),
        source=source,
    )


def check_unique(registrations: Iterable[AppServiceRegistration]) -> None:
    """Refuse two services sharing an id, an as_token or an hs_token (tokens identify a service)."""
    seen: dict[tuple[str, str], str] = {}
    for reg in registrations:
        for what, value in (("id", reg.id), ("as_token", reg.as_token), ("hs_token", reg.hs_token)):
            other = seen.get((what, value))
            if other is not None:
                raise ConfigError(f"{reg.source}.{what}", f"is the same as in {other}; each service needs its own")
            seen[(what, value)] = reg.source
        other = seen.get(("as_token", reg.hs_token)) or seen.get(("hs_token", reg.as_token))
        if other is not None and other != reg.source:
            raise ConfigError(f"{reg.source}.as_token", f"a token is shared with {other}")
