"""Routing of Matrix HTTP requests to servlets, and the JSON edge of the server.

A listener serves one ``JsonResource`` (inside a ``matrixd.http.request.MatrixSite``).
Servlets register ``(method, path regex) -> async callback`` routes on it; the
resource matches the raw request path, URL-decodes the named groups and calls the
callback as ``await callback(request, **path_args)``.

A callback returns ``(status, json_body)`` and the resource writes it as compact
UTF-8 JSON; or it writes the response itself (media downloads, metrics) with
``respond_with_bytes`` / ``respond_with_file`` and returns ``None``.

Everything that goes wrong is turned into the Matrix error JSON here, so servlets
and handlers just raise ``matrixd.api.errors.MatrixError``:

* unknown path: 404 ``M_UNRECOGNIZED``; known path, other method: 405 ``M_UNRECOGNIZED``;
* ``MatrixError``: its status, errcode, extra fields and headers (``Retry-After``);
* body over the listener's limit: 413 ``M_TOO_LARGE``;
* any other exception: logged with the request id, 500 ``M_UNKNOWN`` with a fixed
  message (a 500 is a bug, but internals never reach the client).

Every response carries the CORS headers the spec recommends, and ``OPTIONS`` on
any path is answered 200 so browser preflights succeed.

Usage::

    class RoomSendServlet(RestServlet):
        PATTERNS = client_patterns(
            "/rooms/(?P<room_id>[^/]*)/send/(?P<event_type>[^/]*)/(?P<txn_id>[^/]*)"
        )

        def __init__(self, auth: Auth, handler: MessageHandler) -> None:
            self._auth = auth
            self._handler = handler

        async def on_PUT(
            self, request: MatrixRequest, room_id: str, event_type: str, txn_id: str
        ) -> tuple[int, JsonDict]:
            requester = await self._auth.get_user_by_req(request)
            content = parse_json_object_from_request(request)
            event_id = await self._handler.send(requester, room_id, event_type, txn_id, content)
            return 200, {"event_id": event_id}

    resource = JsonResource()
    RoomSendServlet(auth, handler).register(resource)
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from typing import Any, Callable, Coroutine, ClassVar, Iterable, Optional, Pattern, Sequence

import attrs
from prometheus_client import Counter, Gauge, Histogram
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from matrixd.api.errors import Codes, MatrixError, UnrecognizedRequestError
from matrixd.http.request import MatrixRequest, current_request_id
from matrixd.http.responses import (
    JsonBody,
    encode_json,
    respond_with_bytes,
    respond_with_error,
    respond_with_file,
    respond_with_json,
)
from matrixd.metrics import LATENCY_BUCKETS

logger = logging.getLogger(__name__)

__all__ = [
    "CORS_HEADERS",
    "JsonBody",
    "JsonResource",
    "RestServlet",
    "ServletCallback",
    "client_patterns",
    "encode_json",
    "federation_patterns",
    "media_patterns",
    "prefixed_patterns",
    "respond_with_bytes",
    "respond_with_error",
    "respond_with_file",
    "respond_with_json",
]

ServletResult = Optional[tuple[int, JsonBody]]
ServletCallback = Callable[..., Coroutine[Any, Any, ServletResult]]

SERVER_HEADER = b"matrixd"

CORS_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"Access-Control-Allow-Origin", b"*"),
    (b"Access-Control-Allow-Methods", b"GET, HEAD, POST, PUT, DELETE, OPTIONS"),
    (b"Access-Control-Allow-Headers", b"X-Requested-With, Content-Type, Authorization, Date"),
    (b"Access-Control-Expose-Headers", b"Retry-After"),
)

# Methods a RestServlet may implement as ``on_<METHOD>``. HEAD is served by on_GET.
SERVLET_METHODS = ("GET", "POST", "PUT", "DELETE")

_requests_total = Counter(
    "matrixd_http_server_requests_total",
    "HTTP requests answered, by servlet, method and status code",
    ["servlet", "method", "code"],
)
_request_duration = Histogram(
    "matrixd_http_server_request_duration_seconds",
    "Time from request headers to the end of the response, by servlet and method",
    ["servlet", "method"],
    buckets=LATENCY_BUCKETS,
)
_in_flight = Gauge(
    "matrixd_http_server_in_flight_requests",
    "Requests being handled right now, by servlet and method",
    ["servlet", "method"],
)
# Synapse's names for the same facts (its dashboards and alerts query these).
_synapse_received = Counter("synapse_http_server_requests_received", "Requests received", ["method", "servlet"])
_synapse_responses = Counter("synapse_http_server_responses", "Responses sent, by status", ["method", "code"])
_synapse_response_count = Counter("synapse_http_server_response_count", "Responses sent, by servlet",
                                  ["method", "servlet", "tag"])
_synapse_response_time = Histogram(
    "synapse_http_server_response_time_seconds", "Seconds from request to the end of the response",
    ["method", "servlet", "tag", "code"], buckets=LATENCY_BUCKETS,
)
_synapse_in_flight = Gauge("synapse_http_server_in_flight_requests_count", "Requests being handled right now",
                           ["method", "servlet"])

# ---------------------------------------------------------------------------
# Path patterns
# ---------------------------------------------------------------------------


def prefixed_patterns(prefix_regex: str, path_regex: str) -> list[Pattern[str]]:
    """``^<prefix><path>$`` compiled; the building block of the helpers below.

    ``prefix_regex`` and ``path_regex`` are regexes over the raw (still
    percent-encoded) request path; use named groups for path arguments.
    """
    return [re.compile("^" + prefix_regex + path_regex + "$")]


def client_patterns(
    path_regex: str,
    releases: Sequence[str] = ("r0", "v3"),
    unstable: bool = False,
    v1: bool = False,
) -> list[Pattern[str]]:
    """Patterns for a Client-Server API path under ``/_matrix/client/<version>``.

    ``client_patterns("/rooms/(?P<room_id>[^/]*)/joined_members")`` matches
    ``/_matrix/client/r0/...`` and ``/_matrix/client/v3/...``; ``v1=True`` adds
    ``/_matrix/client/v1`` and ``unstable=True`` adds ``/_matrix/client/unstable``.
    """
    versions = list(releases)
    if v1:
        versions.append("v1")
    if unstable:
        versions.append("unstable")
    if not versions:
        raise ValueError(f"client_patterns({path_regex!r}) needs at least one version")
    alternatives = "|".join(re.escape(v) for v in versions)
    return prefixed_patterns(f"/_matrix/client/(?:{alternatives})", path_regex)


def federation_patterns(path_regex: str, versions: Sequence[str] = ("v1",)) -> list[Pattern[str]]:
    """Patterns under ``/_matrix/federation/<version>``."""
    alternatives = "|".join(re.escape(v) for v in versions)
    return prefixed_patterns(f"/_matrix/federation/(?:{alternatives})", path_regex)


def media_patterns(path_regex: str, versions: Sequence[str] = ("r0", "v3")) -> list[Pattern[str]]:
    """Patterns under the legacy ``/_matrix/media/<version>`` prefix."""
    alternatives = "|".join(re.escape(v) for v in versions)
    return prefixed_patterns(f"/_matrix/media/(?:{alternatives})", path_regex)


# ---------------------------------------------------------------------------
# Routing
# ---------------------------------------------------------------------------


@attrs.frozen(slots=True)
class _Route:
    method: str
    pattern: Pattern[str]
    callback: ServletCallback
    servlet_name: str
    cancel_on_disconnect: bool


class JsonResource(Resource):
    """The root resource of a listener: routes every path to registered servlets.

    It is a leaf: Twisted hands it every request and it matches ``request.path``
    against the registered regexes in registration order. Serve it with a
    ``MatrixSite`` (the requests must be ``MatrixRequest``s).
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._routes: list[_Route] = []
        self._seen: set[tuple[str, str]] = set()

    def register_paths(
        self,
        method: str,
        patterns: Iterable[Pattern[str]],
        callback: ServletCallback,
        servlet_name: str,
        cancel_on_disconnect: bool = False,
    ) -> None:
        """Route ``method`` on each of ``patterns`` to ``callback``.

        ``cancel_on_disconnect``: cancel the callback's Deferred when the client
        goes away. Only for handlers that are safe to stop at any ``await``
        (long-polls, pure reads); others run to completion and their response is
        dropped.

        Raises:
            ValueError: the same method and pattern are already registered
                (two servlets claiming one endpoint is a wiring bug).
        """
        method = method.upper()
        for pattern in patterns:
            key = (method, pattern.pattern)
            if key in self._seen:
                raise ValueError(f"{method} {pattern.pattern} is registered twice")
            self._seen.add(key)
            self._routes.append(_Route(method, pattern, callback, servlet_name, cancel_on_disconnect))

    def routes(self) -> list[tuple[str, Pattern[str], str]]:
        """(method, pattern, servlet name) of every route, in match order (for tests and tooling)."""
        return [(r.method, r.pattern, r.servlet_name) for r in self._routes]

    def render(self, request: MatrixRequest) -> int:
        """Start handling ``request`` and tell Twisted the response comes later."""
        token = current_request_id.set(request.request_id)
        try:
            d = defer.ensureDeferred(self._handle(request))
        finally:
            current_request_id.reset(token)
        # _handle never raises, but make sure a bug there is still logged.
        d.addErrback(self._log_unhandled, request)
        return NOT_DONE_YET

    @staticmethod
    def _log_unhandled(failure: Failure, request: MatrixRequest) -> None:
        logger.error(
            "[%s] unhandled failure while serving the request",
            request.request_id,
            exc_info=failure.value,
        )

    def _find_route(self, method: str, path: str) -> tuple[Optional[_Route], Optional[re.Match[str]], set[str]]:
        """The route for ``method`` on ``path``, or the methods ``path`` allows."""
        lookup = "GET" if method == "HEAD" else method
        allowed: set[str] = set()
        for route in self._routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.method == lookup:
                return route, match, allowed
            allowed.add(route.method)
        return None, None, allowed

    async def _handle(self, request: MatrixRequest) -> None:
        for name, value in CORS_HEADERS:
            request.setHeader(name, value)
        request.setHeader(b"Server", SERVER_HEADER)
        method = request.get_method()

        if method == "OPTIONS":
            request.servlet_name = "options"
            self._track(request, method)
            respond_with_json(request, 200, {})
            return

        path = _path_for_matching(request.path or b"/")
        route, match, allowed = self._find_route(method, path)
        request.servlet_name = route.servlet_name if route else "unrecognized"
        self._track(request, "GET" if method == "HEAD" else method)
        try:
            if request.body_too_large:
                raise MatrixError(
                    413,
                    f"Request body is larger than the {request.max_body_size}"
                    " bytes this server accepts",
                    Codes.TOO_LARGE,
                )
            if route is None or match is None:
                if allowed:
                    request.setHeader(b"Allow", ", ".join(sorted(allowed)).encode("ascii"))
                    raise UnrecognizedRequestError(
                        f"{method} is not allowed on this endpoint", code=405
                    )
                raise UnrecognizedRequestError("Unrecognized request", code=404)

            kwargs = _decode_path_args(match)
            servlet_d: defer.Deferred[ServletResult] = defer.ensureDeferred(route.callback(request, **kwargs))
            finished = request.notifyFinish()
            if route.cancel_on_disconnect:
                finished.addErrback(lambda _f: servlet_d.cancel())
            else:
                finished.addErrback(lambda _f: None)
            result = await servlet_d
            if request.disconnected:
                return
            if result is None:
                if not request.startedWriting:
                    raise RuntimeError(
                        f"{route.servlet_name}.on_{method} returned None without writing a response"
                    )
                return
            code, body = result
            respond_with_json(request, code, body)
        except MatrixError as e:
            if request.disconnected:
                return
            if e.code >= 500:
                logger.warning("[%s] %s", request.request_id, e)
            self._write_error(request, e)
        except defer.CancelledError:
            if not request.disconnected:
                logger.error("[%s] handler was cancelled while the client was connected",
                             request.request_id, exc_info=True)
                self._write_error(request, MatrixError(500, "Internal server error", Codes.UNKNOWN))
        except Exception:
            logger.exception("[%s] error handling %s %s", request.request_id, method,
                             request.get_redacted_uri())
            if not request.disconnected:
                self._write_error(request, MatrixError(500, "Internal server error", Codes.UNKNOWN))

    @staticmethod
    def _write_error(request: MatrixRequest, error: MatrixError) -> None:
        if request.finished or request.disconnected:
            return
        if request.startedWriting:
            # Headers already went out: the only honest signal left is a cut connection.
            logger.error("[%s] error after the response started; closing the connection",
                         request.request_id)
            request.loseConnection()
            return
        respond_with_error(request, error)

    @staticmethod
    def _track(request: MatrixRequest, method: str) -> None:
        """Count the request as in flight until its response ends or the client leaves.

        Recorded from the request's finish notification, never from a ``finally``
        in the handler coroutine: a coroutine abandoned mid-await is closed by the
        garbage collector, possibly while prometheus_client holds its
        (non-reentrant) lock, and touching a metric there would deadlock.
        """
        servlet = request.servlet_name
        in_flight = _in_flight.labels(servlet, method)
        in_flight.inc()
        synapse_in_flight = _synapse_in_flight.labels(method, servlet)
        synapse_in_flight.inc()
        _synapse_received.labels(method, servlet).inc()

        def done(_: object) -> None:
            in_flight.dec()
            synapse_in_flight.dec()
            code = str(request.code) if request.finished else "disconnected"
            elapsed = request.elapsed_seconds()
            _requests_total.labels(servlet, method, code).inc()
            _request_duration.labels(servlet, method).observe(elapsed)
            _synapse_responses.labels(method, code).inc()
            _synapse_response_count.labels(method, servlet, "").inc()
            _synapse_response_time.labels(method, servlet, "", code).observe(elapsed)

        request.notifyFinish().addBoth(done)


def _path_for_matching(raw: bytes) -> str:
    """The raw path as ASCII text; stray non-ASCII bytes are percent-encoded."""
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return "".join(chr(b) if b < 0x80 else f"%{b:02X}" for b in raw)


def _decode_path_args(match: re.Match[str]) -> dict[str, str]:
    """URL-decode the named groups; invalid UTF-8 is the client's error."""
    args: dict[str, str] = {}
    for name, value in match.groupdict().items():
        if value is None:
            continue
        try:
            args[name] = urllib.parse.unquote(value, errors="strict")
        except UnicodeDecodeError:
            raise MatrixError(
                400, f"Path parameter '{name}' is not valid UTF-8", Codes.INVALID_PARAM
            ) from None
    return args


# ---------------------------------------------------------------------------
# Servlets
# ---------------------------------------------------------------------------


class RestServlet:
    """Base class for servlets: a set of path patterns and ``on_<METHOD>`` callbacks.

    Subclasses set ``PATTERNS`` (from ``client_patterns`` and friends) and define
    any of ``async on_GET / on_POST / on_PUT / on_DELETE(self, request,
    **path_args)`` returning ``(status, json_body)``, or ``None`` after writing the
    response themselves. Dependencies (``Auth``, handlers, config) are constructor
    arguments. ``register(resource)`` adds the routes.

    ``CANCEL_ON_DISCONNECT`` lists the methods whose handler is cancelled when the
    client disconnects; only name methods whose handlers are safe to stop at any
    ``await`` (``/sync`` long-polls, pure reads).
    """

    PATTERNS: ClassVar[Sequence[Pattern[str]]] = ()
    CANCEL_ON_DISCONNECT: ClassVar[frozenset[str]] = frozenset()

    def register(self, resource: JsonResource) -> None:
        if not self.PATTERNS:
            raise ValueError(f"{type(self).__name__} has no PATTERNS")
        found = False
        for method in SERVLET_METHODS:
            callback = getattr(self, f"on_{method}", None)
            if callback is None:
                continue
            found = True
            resource.register_paths(
                method,
                self.PATTERNS,
                callback,
                type(self).__name__,
                cancel_on_disconnect=method in self.CANCEL_ON_DISCONNECT,
            )
        if not found:
            raise ValueError(f"{type(self).__name__} defines no on_<METHOD> callback")
