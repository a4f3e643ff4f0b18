"""The master's side of the internal HTTP API: named write endpoints, idempotent by transaction id.

:class:`ReplicationEndpoints` maps an endpoint name to an async function of
the request's JSON arguments returning a :class:`WriteResult` (the result
JSON and the stream positions written).  :class:`ReplicationWriteServlet`
serves them all at ``POST /_matrixd/replication/<name>/<txn_id>`` behind the
shared-secret MAC (:mod:`matrixd.replication.http.auth`).

Idempotency: the answer to ``(worker, name, txn_id)`` — success or Matrix
error — is kept for :data:`RESPONSE_TTL_S`; a retry gets the same answer
without running the endpoint again, and a retry arriving while the first
call runs waits for it.  (After a master restart the cache is empty, which
is why every endpoint is also safe to repeat: sends are deduplicated by the
client's own transaction id, the other writes set values.)

:class:`ReplicationStreamServlet` serves ``GET /_matrixd/replication/streams/
<stream>?from_token=&to_token=&limit=``: one page of a stream's rows, for
workers catching up on in-memory streams.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Awaitable, Callable, Mapping, Optional, Union

import attrs
from twisted.internet import defer

from matrixd.api.errors import Codes, MatrixError, UnrecognizedRequestError
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet
from matrixd.http.servlet import decode_json_bytes, parse_integer
from matrixd.replication.http.auth import SignedRequest, verify_request
from matrixd.replication.streams import StreamRegistry
from matrixd.types import JsonDict
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

PREFIX = "/_matrixd/replication"
ENDPOINT_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
TXN_ID_RE = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
RESPONSE_TTL_S = 30 * 60
MAX_CACHED_RESPONSES = 50_000
MAX_STREAM_PAGE = 1000


@attrs.frozen(slots=True)
class WriteResult:
    """What a write endpoint returns: its result, and how far each stream it wrote has got."""

    result: JsonDict = attrs.field(factory=dict)
    positions: Mapping[str, int] = attrs.field(factory=dict)

    def to_json(self) -> JsonDict:
        return {"result": self.result, "positions": dict(self.positions)}


#: An endpoint: the request's JSON arguments -> its result; raises MatrixError for the client.
EndpointHandler = Callable[[JsonDict], Awaitable[WriteResult]]


class ReplicationEndpoints:
    """The write endpoints the master serves to workers, by name."""

    def __init__(self) -> None:
        self._handlers: dict[str, EndpointHandler] = {}

    def register(self, name: str, handler: EndpointHandler) -> None:
        if not ENDPOINT_NAME_RE.match(name):
            raise ValueError(f"invalid replication endpoint name {name!r}")
        if name in self._handlers:
            raise ValueError(f"replication endpoint {name!r} is already registered")
        self._handlers[name] = handler

    def get(self, name: str) -> Optional[EndpointHandler]:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)


# A finished answer: (HTTP status, JSON body); or the Deferred of one still running.
_Answer = tuple[int, JsonDict]


class _ResponseCache:
    """Answers by ``(worker, endpoint, txn_id)``, kept for a while (bounded); duplicates wait for the first."""

    def __init__(self, clock: Clock, ttl_s: float, max_entries: int) -> None:
        self._clock = clock
        self._ttl = ttl_s
        self._max = max_entries
        self._done: OrderedDict[tuple[str, str, str], tuple[float, _Answer]] = OrderedDict()
        # Calls still running: the Deferreds of the duplicates waiting for them.
        self._running: dict[tuple[str, str, str], list["defer.Deferred[_Answer]"]] = {}

    def lookup(self, key: tuple[str, str, str]) -> Union[None, _Answer, "defer.Deferred[_Answer]"]:
        """A finished answer, a Deferred of a running one, or None (run it: call :meth:`start`)."""
        self._expire()
        done = self._done.get(key)
        if done is not None:
            return done[1]
        waiters = self._running.get(key)
        if waiters is not None:
            waiter: defer.Deferred[_Answer] = defer.Deferred()
            waiters.append(waiter)
            return waiter
        return None

    def start(self, key: tuple[str, str, str]) -> None:
        self._running[key] = []

    def finish(self, key: tuple[str, str, str], answer: Optional[_Answer]) -> None:
        """Record ``answer`` (None: the call failed unexpectedly and may be retried) and release waiters."""
        waiters = self._running.pop(key, [])
        if answer is not None:
            self._done[key] = (self._clock.time() + self._ttl, answer)
            while len(self._done) > self._max:
                self._done.popitem(last=False)
        for waiter in waiters:
            if answer is not None:
                waiter.callback(answer)
            else:
                waiter.errback(RuntimeError("the first attempt of this internal request failed"))

    def _expire(self) -> None:
        now = self._clock.time()
        while self._done:
            key, (expiry, _answer) = next(iter(self._done.items()))
            if expiry > now:
                break
            del self._done[key]


def _authenticate(request: MatrixRequest, secret: Optional[str], clock: Clock) -> SignedRequest:
    header = request.getHeader("Authorization")
    content = request.content
    body = b""
    if content is not None:
        content.seek(0)
        body = content.read()
    return verify_request(secret, header, method=request.get_method(), path=request.uri.decode("ascii"),
                          body=body, now_ms=clock.time_msec())


class ReplicationWriteServlet(RestServlet):
    """``POST /_matrixd/replication/<endpoint>/<txn_id>``: run a write for a worker (see the module docstring)."""

    PATTERNS = [re.compile(f"^{PREFIX}/(?P<endpoint>[^/]+)/(?P<txn_id>[^/]+)$")]

    def __init__(self, endpoints: ReplicationEndpoints, secret: Optional[str], clock: Clock, *,
                 ttl_s: float = RESPONSE_TTL_S, max_cached: int = MAX_CACHED_RESPONSES) -> None:
        self._endpoints = endpoints
        self._secret = secret
        self._clock = clock
        self._cache = _ResponseCache(clock, ttl_s, max_cached)

    async def on_POST(self, request: MatrixRequest, endpoint: str, txn_id: str) -> tuple[int, JsonDict]:
        signed = _authenticate(request, self._secret, self._clock)
        handler = self._endpoints.get(endpoint)
        if handler is None:
            raise UnrecognizedRequestError(f"Unknown replication endpoint {endpoint!r}", code=404)
        if not TXN_ID_RE.match(txn_id):
            raise MatrixError(400, "Invalid transaction id", Codes.INVALID_PARAM)
        content = request.content
        body = b"{}"
        if content is not None:
            content.seek(0)
            body = content.read() or b"{}"
        args = decode_json_bytes(body)
        if not isinstance(args, dict):
            raise MatrixError(400, "The body must be a JSON object", Codes.BAD_JSON)

        key = (signed.worker_name, endpoint, txn_id)
        cached = self._cache.lookup(key)
        if isinstance(cached, defer.Deferred):
            answer = await cached
        elif cached is not None:
            answer = cached
        else:
            answer = await self._run(key, handler, args)
        code, json_body = answer
        if code != 200:
            raise MatrixError(code, str(json_body.get("error", "")), str(json_body.get("errcode", Codes.UNKNOWN)),
                              {k: v for k, v in json_body.items() if k not in ("errcode", "error")})
        return 200, json_body

    async def _run(self, key: tuple[str, str, str], handler: EndpointHandler, args: JsonDict) -> _Answer:
        self._cache.start(key)
        answer: Optional[_Answer] = None
        try:
            try:
                result = await handler(args)
            except MatrixError as e:
                answer = (e.code, e.to_json())
            else:
                answer = (200, result.to_json())
            return answer
        finally:
            self._cache.finish(key, answer)


class ReplicationStreamServlet(RestServlet):
    """``GET /_matrixd/replication/streams/<stream>``: a page of a stream's rows from the writer."""

    PATTERNS = [re.compile(f"^{PREFIX}/streams/(?P<stream>[^/]+)$")]

    def __init__(self, registry: Callable[[], StreamRegistry], secret: Optional[str], clock: Clock) -> None:
        self._registry = registry
        self._secret = secret
        self._clock = clock

    async def on_GET(self, request: MatrixRequest, stream: str) -> tuple[int, JsonDict]:
        _authenticate(request, self._secret, self._clock)
        registry = self._registry()
        if stream not in registry:
            raise MatrixError(404, f"Unknown stream {stream!r}", Codes.NOT_FOUND)
        entry = registry.get(stream)
        from_token = parse_integer(request, "from_token", required=True)
        to_token = parse_integer(request, "to_token", required=True)
        limit = parse_integer(request, "limit", default=100)
        if not 1 <= limit <= MAX_STREAM_PAGE:
            raise MatrixError(400, f"limit must be 1 to {MAX_STREAM_PAGE}", Codes.INVALID_PARAM)
        if entry.current_token is not None:
            to_token = min(to_token, entry.current_token())
        if to_token <= from_token:
            return 200, {"rows": [], "new_token": max(from_token, to_token), "limited": False}
        page = await entry.get_updates(from_token, to_token, limit)
        return 200, {
            "rows": [[token, entry.encode_row(row)] for token, row in page.rows],
            "new_token": page.new_token,
            "limited": page.limited,
        }


def build_replication_servlets(
    endpoints: ReplicationEndpoints, registry: Callable[[], StreamRegistry], secret: Optional[str], clock: Clock
) -> list[RestServlet]:
    """The servlets of the ``replication`` http resource (the master's internal listener)."""
    return [ReplicationStreamServlet(registry, secret, clock), ReplicationWriteServlet(endpoints, secret, clock)]


__all__ = [
    "EndpointHandler",
    "ReplicationEndpoints",
    "ReplicationStreamServlet",
    "ReplicationWriteServlet",
    "WriteResult",
    "build_replication_servlets",
]
