"""Asking application services about things the homeserver does not know.

* users and aliases: before answering "unknown", ask the services whose
  namespace covers the id (``GET /users/{userId}``, ``GET /rooms/{roomAlias}``);
  a service that answers 2xx has created it, so the caller looks again.  For
  users, :meth:`AppServiceQueries.provision_user` is what profile lookups and
  invites of unknown local users call; it registers the user for the service
  should the service answer 200 without having registered it (the spec says
  it MUST register it itself);
* third-party networks (``/_matrix/client/v3/thirdparty/*``): proxied to the
  services declaring the protocol, answers concatenated;
* ``POST /_matrix/client/v1/appservice/{appserviceId}/ping``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional, Sequence
from urllib.parse import quote

from matrixd.api.errors import AuthError, Codes, MatrixError, NotFoundError
from matrixd.appservice.api import AppServiceApi, AppServiceUnreachable
from matrixd.appservice.interest import InterestChecker
from matrixd.appservice.registration import AppServiceRegistration
from matrixd.storage.accounts import UserStore
from matrixd.storage.profiles import ProfileStore
from matrixd.types import JsonDict, Requester

logger = logging.getLogger(__name__)


class AppServiceQueries:
    def __init__(self, services: Sequence[AppServiceRegistration], api: AppServiceApi,
                 interest: InterestChecker, *, server_name: str, users: UserStore,
                 profiles: ProfileStore) -> None:
        self._services = tuple(services)
        self._by_id = {s.id: s for s in services}
        self._api = api
        self._interest = interest
        self._suffix = ":" + server_name
        self._users = users
        self._profiles = profiles

    def on_aliases_changed(self, room_id: str) -> None:
        """Directory aliases are not events: drop the cached interest in the room by hand."""
        self._interest.invalidate_room(room_id)

    # -- users and aliases ------------------------------------------------------------

    async def query_user(self, user_id: str) -> bool:
        """True if a service whose user namespace covers ``user_id`` says it now exists."""
        for service in self._services:
            if service.is_interested_in_user(user_id) and await self._api.query_user(service, user_id):
                return True
        return False

    async def provision_user(self, user_id: str) -> bool:
        """Whether an unknown local ``user_id`` exists now that the services covering it were asked.

        Only services whose user namespace (exclusive or not) covers the id
        are asked, first to last; the first 2xx answer means the user exists:
        if the service did not register it, it is registered here on the
        service's behalf (no password, display name = localpart).
        """
        if not user_id.endswith(self._suffix) or not user_id.startswith("@"):
            return False
        for service in self._services:
            if service.url is None or not service.is_interested_in_user(user_id):
                continue
            if not await self._api.query_user(service, user_id):
                continue
            if await self._users.get_user(user_id) is None:
                if await self._users.create_user(user_id, None, appservice_id=service.id):
                    await self._profiles.create_profile(user_id, user_id[1:-len(self._suffix)])
                    logger.info("registered %s for application service %s after its user query", user_id,
                                service.id)
            return True
        return False

    async def query_alias(self, alias: str) -> bool:
        """True if a service whose alias namespace covers ``alias`` says it created the room."""
        for service in self._services:
            if service.is_interested_in_alias(alias) and await self._api.query_alias(service, alias):
                return True
        return False

    def is_alias_reserved(self, alias: str, app_service_id: Optional[str]) -> bool:
        """In an exclusive alias namespace of a service other than ``app_service_id``."""
        return any(s.is_exclusive_alias(alias) and s.id != app_service_id for s in self._services)

    # -- third-party networks -----------------------------------------------------------

    def _for_protocol(self, protocol: str) -> list[AppServiceRegistration]:
        return [s for s in self._services if protocol in s.protocols and s.url is not None]

    async def get_protocols(self) -> JsonDict:
        """Every declared protocol with the metadata of its services (unreachable ones left out)."""
        result: JsonDict = {}
        for protocol in sorted({p for s in self._services for p in s.protocols}):
            merged = await self._protocol(protocol)
            if merged is not None:
                result[protocol] = merged
        return result

    async def get_protocol(self, protocol: str) -> JsonDict:
        merged = await self._protocol(protocol)
        if merged is None:
            raise NotFoundError(f"No application service provides the protocol {protocol!r}")
        return merged

    async def _protocol(self, protocol: str) -> Optional[JsonDict]:
        """The first answering service's metadata, with every answering service's instances.

        Instances get an ``instance_id`` unique on this server (service id and
        network id), the id clients use as ``third_party_instance_id``.
        """
        merged: Optional[JsonDict] = None
        instances: list[JsonDict] = []
        for service in self._for_protocol(protocol):
            info = await self._api.get_json(service, "/thirdparty/protocol/" + quote(protocol, safe=""))
            if not isinstance(info, dict):
                continue
            if merged is None:
                merged = dict(info)
            for instance in info.get("instances") or []:
                if isinstance(instance, dict):
                    network = instance.get("network_id", "")
                    instances.append({**instance, "instance_id": f"{service.id}|{network}"})
        if merged is not None:
            merged["instances"] = instances
        return merged

    async def _lookup(self, services: Sequence[AppServiceRegistration], path: str,
                      query: Mapping[str, Any]) -> list[JsonDict]:
        found: list[JsonDict] = []
        for service in services:
            answer = await self._api.get_json(service, path, dict(query))
            if isinstance(answer, list):
                found.extend(a for a in answer if isinstance(a, dict))
        return found

    async def query_locations(self, protocol: str, fields: Mapping[str, Any]) -> list[JsonDict]:
        return await self._lookup(self._for_protocol(protocol), "/thirdparty/location/" + quote(protocol, safe=""),
                                  fields)

    async def query_users(self, protocol: str, fields: Mapping[str, Any]) -> list[JsonDict]:
        return await self._lookup(self._for_protocol(protocol), "/thirdparty/user/" + quote(protocol, safe=""),
                                  fields)

    async def lookup_location(self, alias: str) -> list[JsonDict]:
        services = [s for s in self._services if s.protocols and s.url is not None]
        return await self._lookup(services, "/thirdparty/location", {"alias": alias})

    async def lookup_user(self, user_id: str) -> list[JsonDict]:
        services = [s for s in self._services if s.protocols and s.url is not None]
        return await self._lookup(services, "/thirdparty/user", {"userid": user_id})

    # -- ping ---------------------------------------------------------------------------

    async def ping(self, requester: Requester, appservice_id: str, transaction_id: Optional[str]) -> JsonDict:
        """Only the service itself may ping itself; errors follow the client-server spec."""
        service = self._by_id.get(appservice_id)
        if requester.app_service_id is None or service is None or requester.app_service_id != appservice_id:
            raise AuthError(403, "Provided access token is not the appservice's as_token", Codes.FORBIDDEN)
        if service.url is None:
            raise MatrixError(400, "Application service doesn't have a URL configured", "M_URL_NOT_SET")
        try:
            response, duration_ms = await self._api.ping(service, transaction_id)
        except AppServiceUnreachable as e:
            if e.timed_out:
                raise MatrixError(504, "Connection to application service timed out",
                                  "M_CONNECTION_TIMEOUT") from None
            raise MatrixError(502, f"Connection to application service failed: {e}",
                              "M_CONNECTION_FAILED") from None
        if not 200 <= response.code < 300:
            raise MatrixError(502, f"Ping returned status {response.code}", "M_BAD_STATUS",
                              {"status": response.code, "body": response.body.decode("utf-8", "replace")})
        return {"duration_ms": duration_ms}


class AppServiceNamespaces:
    """Exclusive-namespace checks other areas consult (registration, aliases)."""

    def __init__(self, services: Sequence[AppServiceRegistration], server_name: str) -> None:
        self._services = tuple(services)
        self._by_token = {s.as_token: s for s in services}
        self._by_id = {s.id: s for s in services}
        self._server_name = server_name

    def is_rate_limit_exempt(self, service_id: str) -> bool:
        """The service's registration says ``rate_limited: false`` (the default is true)."""
        service = self._by_id.get(service_id)
        return service is not None and not service.rate_limited

    def is_user_exclusive(self, user_id: str) -> bool:
        """Claimed exclusively by a service (or is a service's sender): normal users may not register it."""
        return any(s.is_exclusive_user(user_id) or s.sender(self._server_name) == user_id for s in self._services)

    def is_alias_reserved(self, alias: str, app_service_id: Optional[str]) -> bool:
        return any(s.is_exclusive_alias(alias) and s.id != app_service_id for s in self._services)

    def lookup_token(self, token: str) -> Optional[tuple[str, bool, Callable[[str], bool]]]:
        """For ``m.login.application_service``: (service id, rate limited, may act as user)."""
        service = self._by_token.get(token)
        if service is None:
            return None
        server_name = self._server_name
        return service.id, service.rate_limited, lambda user_id: service.can_act_as(user_id, server_name)
