"""Talking to application services: the homeserver -> service HTTP API (``/_matrix/app/v1``).

Requests go through an :class:`AppServiceTransport` so tests can answer them in
memory; :class:`AgentTransport` is the real one.  It uses a plain Twisted
``Agent`` (not the federation client): service URLs are usually loopback or
private addresses an operator configured on purpose, which the federation
client's IP filter would refuse.  Every request carries ``Authorization: Bearer
<hs_token>`` (the current spec; the legacy ``access_token`` query parameter is
not sent).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Optional, Protocol, Sequence
from urllib.parse import quote, urlencode

import attrs
from twisted.internet import defer
from twisted.internet.error import ConnectError, DNSLookupError, TimeoutError as TxTimeoutError
from twisted.web.client import HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer

from matrixd.appservice.registration import AppServiceRegistration
from matrixd.federation.transport.body import BytesProducer
from matrixd.http.tls import outbound_agent
from matrixd.types import JsonDict
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

APP_PREFIX = "/_matrix/app/v1"
DEFAULT_TIMEOUT = 60.0
#: Bodies larger than this from a service are refused (they are small JSON answers).
MAX_RESPONSE_BYTES = 10 * 1024 * 1024


class AppServiceUnreachable(Exception):
    """The service could not be reached; ``timed_out`` tells a timeout from a refused connection."""

    def __init__(self, msg: str, timed_out: bool = False) -> None:
        super().__init__(msg)
        self.timed_out = timed_out


@attrs.frozen(slots=True)
class AppServiceResponse:
    code: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class AppServiceTransport(Protocol):
    """One HTTP request to a service; raises :class:`AppServiceUnreachable` on connection failures."""

    async def request(self, method: str, url: str, token: str, body: Optional[JsonDict],
                      timeout: float) -> AppServiceResponse: ...


class AgentTransport:
    """Real HTTP through a ``twisted.web.client.Agent`` on the given reactor (persistent connections)."""

    def __init__(self, reactor: Any, clock: Clock) -> None:
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 2
        self._agent = outbound_agent(reactor, connect_timeout=15, pool=self._pool)
        self._clock = clock

    async def request(self, method: str, url: str, token: str, body: Optional[JsonDict],
                      timeout: float) -> AppServiceResponse:
        headers = Headers({b"Authorization": [f"Bearer {token}".encode()], b"User-Agent": [b"matrixd"]})
        producer: Optional[IBodyProducer] = None
        if body is not None:
            headers.addRawHeader(b"Content-Type", b"application/json")
            producer = BytesProducer(json.dumps(body).encode())
        d = self._agent.request(method.encode(), url.encode(), headers, producer)

        async def _read() -> AppServiceResponse:
            response = await d
            if isinstance(response.length, int) and response.length > MAX_RESPONSE_BYTES:
                response.deliverBody(_Discard())
                return AppServiceResponse(response.code, b"")
            return AppServiceResponse(response.code, await readBody(response))

        whole = defer.ensureDeferred(_read())
        whole.addTimeout(timeout, self._clock.reactor)
        try:
            return await whole
        except (defer.TimeoutError, TxTimeoutError) as e:
            raise AppServiceUnreachable(f"timed out: {e}", timed_out=True) from None
        except (ConnectError, DNSLookupError) as e:
            raise AppServiceUnreachable(f"cannot connect: {e}") from None
        except Exception as e:  # response-level failures (connection lost mid-response, ...)
            raise AppServiceUnreachable(f"request failed: {e!r}") from None

    async def close(self) -> None:
        await self._pool.closeCachedConnections()


class _Discard:
    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        pass

    def makeConnection(self, transport: Any) -> None:
        pass


def _url(service: AppServiceRegistration, path: str, query: Optional[dict[str, Any]] = None) -> str:
    assert service.url is not None
    url = service.url.rstrip("/") + APP_PREFIX + path
    if query:
        url += "?" + urlencode(query, doseq=True)
    return url


class AppServiceApi:
    """The calls the homeserver makes on services (transactions, queries, third-party lookups, ping)."""

    def __init__(self, transport: AppServiceTransport, clock: Clock, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._transport = transport
        self._clock = clock
        self._timeout = timeout

    def use_transport(self, transport: AppServiceTransport) -> None:
        """Replace the transport before any request is made (tests answer requests in memory)."""
        self._transport = transport

    async def push_transaction(self, service: AppServiceRegistration, txn_id: int, events: Sequence[JsonDict],
                               ephemeral: Sequence[JsonDict] = (), to_device: Sequence[JsonDict] = ()) -> bool:
        """``PUT /transactions/{txnId}``; True once the service acknowledged it with a 2xx."""
        if service.url is None:
            return True
        body: JsonDict = {"events": list(events)}
        if ephemeral:
            body["ephemeral"] = list(ephemeral)
            body["de.sorunome.msc2409.ephemeral"] = list(ephemeral)
        if to_device:
            body["org.matrix.msc2409.to_device"] = list(to_device)
        try:
            response = await self._transport.request(
                "PUT", _url(service, f"/transactions/{txn_id}"), service.hs_token, body, self._timeout)
        except AppServiceUnreachable as e:
            logger.warning("application service %s: transaction %d not delivered: %s", service.id, txn_id, e)
            return False
        if 200 <= response.code < 300:
            return True
        logger.warning("application service %s: transaction %d refused with %d", service.id, txn_id,
                       response.code)
        return False

    async def _query(self, service: AppServiceRegistration, path: str) -> bool:
        if service.url is None:
            return False
        try:
            response = await self._transport.request("GET", _url(service, path), service.hs_token, None,
                                                     self._timeout)
        except AppServiceUnreachable as e:
            logger.warning("application service %s: query %s failed: %s", service.id, path, e)
            return False
        return 200 <= response.code < 300

    async def query_user(self, service: AppServiceRegistration, user_id: str) -> bool:
        """``GET /users/{userId}``: True if the service says it created the user."""
        return await self._query(service, "/users/" + quote(user_id, safe=""))

    async def query_alias(self, service: AppServiceRegistration, alias: str) -> bool:
        """``GET /rooms/{roomAlias}``: True if the service says it created a room for the alias."""
        return await self._query(service, "/rooms/" + quote(alias, safe=""))

    async def get_json(self, service: AppServiceRegistration, path: str,
                       query: Optional[dict[str, Any]] = None) -> Optional[Any]:
        """A third-party lookup; the decoded body of a 2xx answer, None on any failure."""
        if service.url is None:
            return None
        try:
            response = await self._transport.request("GET", _url(service, path, query), service.hs_token, None,
                                                     self._timeout)
        except AppServiceUnreachable as e:
            logger.warning("application service %s: %s failed: %s", service.id, path, e)
            return None
        if not 200 <= response.code < 300:
            return None
        return response.json()

    async def ping(self, service: AppServiceRegistration,
                   transaction_id: Optional[str]) -> tuple[AppServiceResponse, int]:
        """``POST /ping``; returns (the response, duration in ms). Raises AppServiceUnreachable."""
        assert service.url is not None
        body: JsonDict = {} if transaction_id is None else {"transaction_id": transaction_id}
        start = time.monotonic()
        response = await self._transport.request("POST", _url(service, "/ping"), service.hs_token, body,
                                                 self._timeout)
        return response, int((time.monotonic() - start) * 1000)
