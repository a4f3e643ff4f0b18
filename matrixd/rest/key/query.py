"""The notary API: ``GET /_matrix/key/v2/query/{serverName}`` and ``POST /_matrix/key/v2/query``.

Unauthenticated, like the rest of the key API. Answers are
``{"server_keys": [...]}``, each response countersigned by us
(``matrixd.crypto.notary``). A server name that is not valid by the grammar
is 400 ``M_INVALID_PARAM``; so is a ``minimum_valid_until_ts`` that is not an
integer.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from twisted.internet import defer

from matrixd.api.errors import BadJsonError, InvalidParamError
from matrixd.crypto.notary import KeyNotary
from matrixd.crypto.server_keys import JsonDict
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, prefixed_patterns
from matrixd.http.servlet import parse_integer, parse_json_object_from_request
from matrixd.types import is_valid_server_name

#: Servers one POST may ask about (each may cost us a fetch).
MAX_SERVERS_PER_QUERY = 100


def _check_server_name(name: str) -> None:
    if not is_valid_server_name(name):
        raise InvalidParamError(f"{name!r} is not a valid server name")


class RemoteKeyServlet(RestServlet):
    PATTERNS = prefixed_patterns("/_matrix/key/v2", "/query(?:/(?P<server_name>[^/]*))?")

    def __init__(self, notary: KeyNotary) -> None:
        self._notary = notary

    async def on_GET(self, request: MatrixRequest, server_name: Optional[str] = None) -> tuple[int, JsonDict]:
        if server_name is None:
            raise InvalidParamError("GET needs a server name: /_matrix/key/v2/query/{serverName}")
        _check_server_name(server_name)
        minimum = parse_integer(request, "minimum_valid_until_ts", min_value=0)
        responses = await self._notary.query(server_name, {}, minimum)
        return 200, {"server_keys": responses}

    async def on_POST(self, request: MatrixRequest, server_name: Optional[str] = None) -> tuple[int, JsonDict]:
        if server_name is not None:
            raise InvalidParamError("POST queries go to /_matrix/key/v2/query, without a server name")
        body = parse_json_object_from_request(request)
        criteria = _parse_criteria(body.get("server_keys"))
        results = await defer.gatherResults(
            [defer.ensureDeferred(self._notary.query(server, keys, None)) for server, keys in criteria.items()],
            consumeErrors=True,
        )
        return 200, {"server_keys": [r for responses in results for r in responses]}


def _parse_criteria(raw: Any) -> dict[str, dict[str, Optional[int]]]:
    if not isinstance(raw, Mapping):
        raise BadJsonError("'server_keys' must be an object of server names")
    if len(raw) > MAX_SERVERS_PER_QUERY:
        raise InvalidParamError(f"at most {MAX_SERVERS_PER_QUERY} servers may be queried at once")
    criteria: dict[str, dict[str, Optional[int]]] = {}
    for server, keys in raw.items():
        _check_server_name(server)
        if not isinstance(keys, Mapping):
            raise BadJsonError(f"'server_keys.{server}' must be an object of key ids")
        parsed: dict[str, Optional[int]] = {}
        for kid, criterion in keys.items():
            if not isinstance(criterion, Mapping):
                raise BadJsonError(f"'server_keys.{server}.{kid}' must be an object")
            minimum = criterion.get("minimum_valid_until_ts")
            if minimum is not None and (isinstance(minimum, bool) or not isinstance(minimum, int)):
                raise BadJsonError(f"'server_keys.{server}.{kid}.minimum_valid_until_ts' must be an integer")
            parsed[kid] = minimum
        criteria[server] = parsed
    return criteria
