"""``/_matrix/client/v3/thirdparty/*``: third-party networks, answered by the application
services that declare the protocol (see ``matrixd.appservice.queries``)."""

from __future__ import annotations

from typing import Optional

from matrixd.appservice.queries import AppServiceQueries
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_string
from matrixd.types import JsonDict

#: Query parameters that authenticate the client, never forwarded to services as search fields.
_NOT_FIELDS = frozenset({"access_token", "user_id", "device_id"})


def _fields(request: MatrixRequest) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for key, values in (request.args or {}).items():
        name = key.decode("utf-8", "replace")
        if name not in _NOT_FIELDS:
            fields[name] = [v.decode("utf-8", "replace") for v in values]
    return fields


class ThirdPartyProtocolsServlet(RestServlet):
    PATTERNS = client_patterns("/thirdparty/protocols")

    def __init__(self, auth: Auth, queries: AppServiceQueries) -> None:
        self._auth = auth
        self._queries = queries

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.get_user_by_req(request, allow_guest=True)
        return 200, await self._queries.get_protocols()


class ThirdPartyProtocolServlet(RestServlet):
    PATTERNS = client_patterns("/thirdparty/protocol/(?P<protocol>[^/]+)")

    def __init__(self, auth: Auth, queries: AppServiceQueries) -> None:
        self._auth = auth
        self._queries = queries

    async def on_GET(self, request: MatrixRequest, protocol: str) -> tuple[int, JsonDict]:
        await self._auth.get_user_by_req(request, allow_guest=True)
        return 200, await self._queries.get_protocol(protocol)


class ThirdPartyLocationServlet(RestServlet):
    """``/thirdparty/location/{protocol}?<fields>`` and ``/thirdparty/location?alias=``."""

    PATTERNS = client_patterns("/thirdparty/location(?:/(?P<protocol>[^/]+))?")

    def __init__(self, auth: Auth, queries: AppServiceQueries) -> None:
        self._auth = auth
        self._queries = queries

    async def on_GET(self, request: MatrixRequest, protocol: Optional[str] = None) -> tuple[int, list[JsonDict]]:
        await self._auth.get_user_by_req(request, allow_guest=True)
        if protocol:
            return 200, await self._queries.query_locations(protocol, _fields(request))
        return 200, await self._queries.lookup_location(parse_string(request, "alias", required=True))


class ThirdPartyUserServlet(RestServlet):
    """``/thirdparty/user/{protocol}?<fields>`` and ``/thirdparty/user?userid=``."""

    PATTERNS = client_patterns("/thirdparty/user(?:/(?P<protocol>[^/]+))?")

    def __init__(self, auth: Auth, queries: AppServiceQueries) -> None:
        self._auth = auth
        self._queries = queries

    async def on_GET(self, request: MatrixRequest, protocol: Optional[str] = None) -> tuple[int, list[JsonDict]]:
        await self._auth.get_user_by_req(request, allow_guest=True)
        if protocol:
            return 200, await self._queries.query_users(protocol, _fields(request))
        return 200, await self._queries.lookup_user(parse_string(request, "userid", required=True))


def thirdparty_servlets(auth: Auth, queries: AppServiceQueries) -> list[RestServlet]:
    return [ThirdPartyProtocolsServlet(auth, queries), ThirdPartyProtocolServlet(auth, queries),
            ThirdPartyLocationServlet(auth, queries), ThirdPartyUserServlet(auth, queries)]
