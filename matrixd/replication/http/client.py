"""The worker's side of the internal HTTP API: call the master, retry safely, wait for the replica.

:class:`ReplicationHttpClient` signs each request with the shared secret
(:mod:`matrixd.replication.http.auth`) and gives it a fresh transaction id,
reused for every retry, so a request the master already ran is answered from
its cache instead of running twice.  Connection failures, timeouts and
502/503/504 are retried with backoff; a Matrix error from the master's
handler is re-raised here unchanged (the client of the worker sees exactly
what the master would have said).

:class:`RemoteWriter` adds read-your-writes: after the master answers, it
waits (bounded) until this worker's replica has applied every stream
position the write reported, then returns the result.

The transport is an interface (:class:`InternalTransport`) so tests can
route requests to an in-memory site; :class:`AgentTransport` is the real one.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import urllib.parse
from typing import Any, Callable, Collection, Mapping, Optional, Protocol

import attrs
from twisted.internet import defer
from twisted.internet.error import ConnectError, ConnectionClosed, DNSLookupError, TimeoutError
from twisted.web.client import FileBodyProducer, HTTPConnectionPool, ResponseFailed, readBody
from twisted.web.http_headers import Headers

from matrixd.api.errors import Codes, MatrixError
from matrixd.config.workers import InstanceLocation
from matrixd.http.tls import outbound_agent
from matrixd.replication.http.auth import authorization_header
from matrixd.replication.http.server import PREFIX, WriteResult
from matrixd.types import JsonDict
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})


class InternalTransport(Protocol):
    """Sends one HTTP request to another process; fires ``(status, body)`` or fails on a network error."""

    def request(
        self, method: str, location: InstanceLocation, uri: str, headers: Mapping[str, str], body: Optional[bytes]
    ) -> "defer.Deferred[tuple[int, bytes]]": ...


class AgentTransport:
    """:class:`InternalTransport` over ``twisted.web.client.Agent`` with persistent connections."""

    def __init__(self, reactor: Any, *, timeout: float = 60.0) -> None:
        self._reactor = reactor
        self._timeout = timeout
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 10
        self._agent = outbound_agent(reactor, pool=self._pool, connect_timeout=10)

    def request(
        self, method: str, location: InstanceLocation, uri: str, headers: Mapping[str, str], body: Optional[bytes]
    ) -> "defer.Deferred[tuple[int, bytes]]":
        scheme = "https" if location.tls else "http"
        url = f"{scheme}://{location.host}:{location.port}{uri}".encode("ascii")
        h = Headers({k.encode("ascii"): [v.encode("ascii")] for k, v in headers.items()})
        producer = FileBodyProducer(io.BytesIO(body)) if body is not None else None

        async def run() -> tuple[int, bytes]:
            response = await self._agent.request(method.encode("ascii"), url, h, producer)
            content = await readBody(response)
            return int(response.code), bytes(content)

        d = defer.ensureDeferred(run())
        d.addTimeout(self._timeout, self._reactor)
        return d

    def close(self) -> "defer.Deferred[None]":
        d: defer.Deferred[None] = self._pool.closeCachedConnections()
        return d


_NETWORK_ERRORS = (ConnectError, ConnectionClosed, DNSLookupError, TimeoutError, defer.TimeoutError, ResponseFailed)


@attrs.frozen(slots=True)
class HttpClientSettings:
    #: Attempts per call (the first included), with delays initial * 2**n capped at max_backoff.
    max_attempts: int = 8
    initial_backoff: float = 0.25
    max_backoff: float = 5.0


class MasterUnavailableError(MatrixError):
    """The master could not be reached (or kept failing) for a write: 503 to the client."""

    def __init__(self, detail: str) -> None:
        super().__init__(503, f"The homeserver is busy or restarting; try again ({detail})", Codes.UNKNOWN)


class ReplicationHttpClient:
    """Calls the master's internal endpoints for one worker.

    Args:
        clock: for backoff and timestamps.
        transport: how requests travel.
        master: ``instance_map["main"]``.
        worker_name: this worker (part of the MAC and of the idempotency key).
        secret: ``worker_replication_secret``.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        transport: InternalTransport,
        master: InstanceLocation,
        worker_name: str,
        secret: str,
        settings: HttpClientSettings = HttpClientSettings(),
        new_txn_id: Callable[[], str] = lambda: secrets.token_urlsafe(16),
    ) -> None:
        if not secret:
            raise ValueError("the internal HTTP client needs worker_replication_secret")
        self._clock = clock
        self._transport = transport
        self._master = master
        self._worker_name = worker_name
        self._secret = secret
        self._settings = settings
        self._new_txn_id = new_txn_id

    async def call(self, endpoint: str, args: JsonDict) -> WriteResult:
        """Run ``endpoint`` on the master; returns its result and the positions written.

        Raises:
            MatrixError: the master's handler refused (its status and errcode), or
                :class:`MasterUnavailableError` when the master cannot be reached.
        """
        uri = f"{PREFIX}/{endpoint}/{self._new_txn_id()}"
        body = json.dumps(args, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        status, content = await self._request("POST", uri, body)
        decoded = _decode(content)
        if status != 200:
            raise _matrix_error(status, decoded)
        if not isinstance(decoded, dict) or not isinstance(decoded.get("result"), dict) or not isinstance(
            decoded.get("positions"), dict
        ):
            raise MatrixError(502, "Malformed answer from the master", Codes.UNKNOWN)
        positions = {str(k): int(v) for k, v in decoded["positions"].items() if isinstance(v, int)}
        return WriteResult(decoded["result"], positions)

    async def fetch_stream_page(
        self, stream: str, from_token: int, to_token: int, limit: int
    ) -> tuple[list[tuple[int, JsonDict]], int, bool]:
        """One page of a stream from its writer: ``(rows, new_token, limited)``."""
        query = urllib.parse.urlencode({"from_token": from_token, "to_token": to_token, "limit": limit})
        status, content = await self._request("GET", f"{PREFIX}/streams/{stream}?{query}", None)
        decoded = _decode(content)
        if status != 200:
            raise _matrix_error(status, decoded)
        if not isinstance(decoded, dict) or not isinstance(decoded.get("rows"), list):
            raise MatrixError(502, "Malformed stream page from the master", Codes.UNKNOWN)
        rows = [(int(t), r) for t, r in decoded["rows"]]
        return rows, int(decoded["new_token"]), bool(decoded.get("limited"))

    async def _request(self, method: str, uri: str, body: Optional[bytes]) -> tuple[int, bytes]:
        s = self._settings
        last = "no attempt made"
        for attempt in range(s.max_attempts):
            if attempt:
                delay = min(s.max_backoff, s.initial_backoff * (2 ** (attempt - 1)))
                await self._clock.sleep(delay)
            headers = {
                "Authorization": authorization_header(
                    self._secret, method=method, path=uri, worker_name=self._worker_name,
                    ts=self._clock.time_msec(), body=body or b"",
                ),
                "Content-Type": "application/json",
            }
            try:
                status, content = await self._transport.request(method, self._master, uri, headers, body)
            except _NETWORK_ERRORS as e:
                last = f"{type(e).__name__}"
                logger.info("internal %s %s failed (%s); attempt %d of %d", method, uri.split("?")[0], last,
                            attempt + 1, s.max_attempts)
                continue
            if status in RETRY_STATUSES:
                last = f"HTTP {status}"
                continue
            return status, content
        raise MasterUnavailableError(last)


def _decode(content: bytes) -> Any:
    try:
        return json.loads(content.decode("utf-8")) if content else None
    except (UnicodeDecodeError, ValueError):
        return None


def _matrix_error(status: int, decoded: Any) -> MatrixError:
    if isinstance(decoded, dict) and isinstance(decoded.get("errcode"), str):
        extra = {k: v for k, v in decoded.items() if k not in ("errcode", "error")}
        return MatrixError(status, str(decoded.get("error", "")), decoded["errcode"], extra)
    return MatrixError(502 if status < 400 else status, f"The master answered HTTP {status}", Codes.UNKNOWN)


#: ``ReplicationClient.wait_for_stream_position``: (stream, position, timeout) -> reached?
PositionWaiter = Callable[[str, int, float], "defer.Deferred[bool]"]


class RemoteWriter:
    """Writes through the master, then waits for this worker to see them (read-your-writes).

    Args:
        http: the internal HTTP client.
        wait_for_position: the replication client's ``wait_for_stream_position``.
        streams: the streams this worker follows (positions of others are not waited for).
        wait_timeout: how long to wait for the replica before answering anyway (seconds).
    """

    def __init__(self, http: ReplicationHttpClient, wait_for_position: PositionWaiter, streams: Collection[str],
                 wait_timeout: float = 30.0) -> None:
        self._http = http
        self._wait = wait_for_position
        self._streams = frozenset(streams)
        self._wait_timeout = wait_timeout

    async def write(self, endpoint: str, args: JsonDict) -> JsonDict:
        result = await self._http.call(endpoint, args)
        for stream, position in sorted(result.positions.items()):
            if stream not in self._streams:
                continue
            reached = await self._wait(stream, position, self._wait_timeout)
            if not reached:
                logger.warning("replica did not reach %s %d within %.0fs after %s; answering anyway",
                               stream, position, self._wait_timeout, endpoint)
        return result.result
