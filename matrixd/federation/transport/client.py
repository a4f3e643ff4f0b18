"""The outbound federation HTTP client: signed JSON requests to other homeservers.

``MatrixFederationClient.get_json / put_json / post_json(destination, path, ...)``
sends ``<method> <path>?<args>`` to ``destination`` (a server name) with an
``Authorization: X-Matrix`` header signing the method, URI, both server names
and the JSON body (``matrixd.crypto.request_auth``), and returns the response
body, which must be a JSON object. ``get_raw`` returns the headers and body of
any 2xx answer (federation media, ``multipart/mixed``).

* Transport: ``self.agent``, an ``IAgent`` for ``matrix-federation://`` URIs.
  Production uses ``MatrixFederationAgent`` (discovery, TLS, IP filter);
  tests swap in ``matrixd.testing.federation.FederationNetwork.agent``.
* Timeouts: each attempt (connect, headers, body) has ``timeout`` seconds
  (default ``federation.client_timeout``).
* Retries, with jittered exponential backoff: GETs are retried
  ``max_short_retries`` times; PUT/POST only with ``long_retries=True``
  (``max_long_retries``). Retried: connection failures, timeouts, and HTTP
  429/502/503/504. Never retried: refused destinations (IP filter, domain
  whitelist) and other HTTP errors.
* Response bodies over ``max_response_size`` are refused.
* Errors: ``HttpResponseException(code, errcode, msg)`` for a non-2xx answer,
  ``RequestSendFailed`` when no usable answer came (``FederationDeniedError``
  when we may not talk to the destination at all, ``ResponseTooLargeError``
  for a body over the limit). Neither is a
  ``MatrixError``: a remote's 401 must not become our client's 401; use
  ``HttpResponseException.to_matrix_error()`` to pass a remote refusal on.
"""

from __future__ import annotations

import json
import logging
import random
import urllib.parse
from typing import Any, Mapping, Optional, Sequence, TypeVar, Union

from canonicaljson import encode_canonical_json
from prometheus_client import Counter, Histogram
from signedjson.types import SigningKey
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent

from matrixd.api.errors import Codes, MatrixError
from matrixd.config.federation import FederationClientSettings
from matrixd.crypto.request_auth import sign_request
from matrixd.federation.ip_filter import IPBlacklistedError
from matrixd.federation.transport.body import BodyTooLargeError, BytesProducer, read_body_limited
from matrixd.metrics import LATENCY_BUCKETS
from matrixd.types import is_valid_server_name
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
T = TypeVar("T")
QueryValue = Union[str, int, bool, Sequence[str]]
QueryArgs = Mapping[str, QueryValue]

DEFAULT_MAX_RESPONSE_SIZE = 100 * 1024 * 1024
RETRY_BASE_DELAY_S = 0.5
_RETRYABLE_STATUS = frozenset({429, 502, 503, 504})

_requests = Counter(
    "matrixd_federation_client_requests_total",
    "Outbound federation requests by method and outcome (HTTP status or 'error')",
    ["method", "code"],
)
_duration = Histogram(
    "matrixd_federation_client_request_duration_seconds",
    "Time per outbound federation request attempt",
    ["method"],
    buckets=LATENCY_BUCKETS,
)


class HttpResponseException(Exception):
    """The destination answered with a non-2xx status.

    Attributes:
        code: the HTTP status.
        errcode: the Matrix ``errcode`` of the body, if it had one.
        msg: the body's ``error``, or a description of the body.
        response: the parsed JSON body, if it was JSON.
    """

    def __init__(self, code: int, errcode: Optional[str], msg: str, response: Any = None) -> None:
        super().__init__(f"{code} {errcode or '-'}: {msg}")
        self.code = code
        self.errcode = errcode
        self.msg = msg
        self.response = response

    @classmethod
    def from_body(cls, code: int, body: bytes) -> "HttpResponseException":
        try:
            parsed = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            snippet = body[:200].decode("utf-8", "replace")
            return cls(code, None, f"non-JSON error body: {snippet!r}")
        if isinstance(parsed, dict):
            errcode = parsed.get("errcode")
            error = parsed.get("error")
            return cls(
                code,
                errcode if isinstance(errcode, str) else None,
                error if isinstance(error, str) else f"HTTP {code}",
                parsed,
            )
        return cls(code, None, f"HTTP {code}", parsed)

    def to_matrix_error(self) -> MatrixError:
        """The error to give our own client: the remote's 4xx refusals as they are, else 502."""
        if 400 <= self.code < 500 and self.code not in (401, 429) and self.errcode:
            return MatrixError(self.code, self.msg, self.errcode)
        return MatrixError(502, f"The remote server answered {self.code}: {self.msg}", Codes.UNKNOWN)


class RequestSendFailed(Exception):
    """No usable response: the request failed before or while the destination answered."""

    def __init__(self, destination: str, reason: str, can_retry: bool) -> None:
        super().__init__(f"request to {destination} failed: {reason}")
        self.destination = destination
        self.reason = reason
        self.can_retry = can_retry


class ResponseTooLargeError(RequestSendFailed):
    """The response body was over the request's ``max_response_size``."""

    def __init__(self, destination: str, reason: str) -> None:
        super().__init__(destination, reason, can_retry=False)


class FederationDeniedError(RequestSendFailed):
    """Federation with the destination is not allowed (``federation_domain_whitelist``)."""

    def __init__(self, destination: str) -> None:
        super().__init__(destination, "the destination is not in federation_domain_whitelist", can_retry=False)


def encode_query_args(args: Optional[QueryArgs]) -> str:
    """``a=1&b=x&b=y`` from ``{"a": 1, "b": ["x", "y"]}``; booleans as ``true``/``false``."""
    if not args:
        return ""
    pairs: list[tuple[str, str]] = []
    for name, value in args.items():
        if isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        elif isinstance(value, (str, int)):
            pairs.append((name, str(value)))
        else:
            pairs.extend((name, str(v)) for v in value)
    return urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)


class MatrixFederationClient:
    """Signed JSON requests to other homeservers (see the module docstring).

    Attributes:
        agent: the transport (public so tests can route requests in memory).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        server_name: str,
        signing_key: SigningKey,
        agent: IAgent,
        settings: FederationClientSettings = FederationClientSettings(),
        domain_whitelist: Optional[frozenset[str]] = None,
        user_agent: str = "matrixd",
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        rng: Optional[random.Random] = None,
    ) -> None:
        self._clock = clock
        self.server_name = server_name
        self._signing_key = signing_key
        self.agent = agent
        self._settings = settings
        self._domain_whitelist = domain_whitelist
        self._user_agent = user_agent.encode("utf-8")
        self._max_response_size = max_response_size
        self._rng = rng or random.Random()

    async def get_json(
        self,
        destination: str,
        path: str,
        args: Optional[QueryArgs] = None,
        timeout: Optional[float] = None,
        *,
        max_retries: Optional[int] = None,
        max_response_size: Optional[int] = None,
    ) -> JsonDict:
        """GET ``path`` on ``destination``; retried on transient failures (``max_short_retries``)."""
        retries = self._settings.max_short_retries if max_retries is None else max_retries
        return await self._request(
            "GET", destination, path, args, None, timeout, retries,
            self._settings.max_short_retry_delay_ms / 1000, max_response_size,
        )

    async def put_json(
        self,
        destination: str,
        path: str,
        data: Optional[JsonDict] = None,
        args: Optional[QueryArgs] = None,
        timeout: Optional[float] = None,
        *,
        long_retries: bool = False,
        max_response_size: Optional[int] = None,
    ) -> JsonDict:
        """PUT the JSON object ``data`` (``{}`` if None); retried only with ``long_retries``."""
        return await self._request("PUT", destination, path, args, data if data is not None else {}, timeout,
                                   *self._long_or_none(long_retries), max_response_size)

    async def post_json(
        self,
        destination: str,
        path: str,
        data: Optional[JsonDict] = None,
        args: Optional[QueryArgs] = None,
        timeout: Optional[float] = None,
        *,
        long_retries: bool = False,
        max_response_size: Optional[int] = None,
    ) -> JsonDict:
        """POST the JSON object ``data`` (``{}`` if None); retried only with ``long_retries``."""
        return await self._request("POST", destination, path, args, data if data is not None else {}, timeout,
                                   *self._long_or_none(long_retries), max_response_size)

    async def get_raw(
        self,
        destination: str,
        path: str,
        args: Optional[QueryArgs] = None,
        timeout: Optional[float] = None,
        *,
        max_retries: Optional[int] = None,
        max_response_size: Optional[int] = None,
    ) -> tuple[Headers, bytes]:
        """GET ``path`` on ``destination`` and return the 2xx response's headers and body, whatever its type
        (federation media is ``multipart/mixed``); errors and retries as ``get_json``."""
        retries = self._settings.max_short_retries if max_retries is None else max_retries
        return await self._request_raw(
            "GET", destination, path, args, None, timeout, retries,
            self._settings.max_short_retry_delay_ms / 1000, max_response_size,
        )

    def _long_or_none(self, long_retries: bool) -> tuple[int, float]:
        if long_retries:
            return self._settings.max_long_retries, self._settings.max_long_retry_delay_ms / 1000
        return 0, 0.0

    def check_destination(self, destination: str) -> None:
        """Raise if we may not send to ``destination`` (invalid name, or not whitelisted)."""
        if not is_valid_server_name(destination):
            raise RequestSendFailed(destination, "not a valid server name", can_retry=False)
        if self._domain_whitelist is not None and destination not in self._domain_whitelist:
            raise FederationDeniedError(destination)

    async def _request(
        self,
        method: str,
        destination: str,
        path: str,
        args: Optional[QueryArgs],
        content: Optional[JsonDict],
        timeout: Optional[float],
        max_retries: int,
        max_delay_s: float,
        max_response_size: Optional[int],
    ) -> JsonDict:
        _headers, body = await self._request_raw(method, destination, path, args, content, timeout, max_retries,
                                                 max_delay_s, max_response_size)
        text = self._decode_body(destination, body)
        del body  # a large answer (a room's /state) is not held three times while it is parsed
        return self._parse_json_text(destination, text)

    async def _request_raw(
        self,
        method: str,
        destination: str,
        path: str,
        args: Optional[QueryArgs],
        content: Optional[JsonDict],
        timeout: Optional[float],
        max_retries: int,
        max_delay_s: float,
        max_response_size: Optional[int],
    ) -> tuple[Headers, bytes]:
        self.check_destination(destination)
        if not path.startswith("/") or "?" in path or "#" in path:
            raise ValueError(f"path must be an absolute path without a query, got {path!r}")
        query = encode_query_args(args)
        uri = path + ("?" + query if query else "")
        body = encode_canonical_json(content) if content is not None else None
        headers = Headers({
            b"User-Agent": [self._user_agent],
            b"Authorization": [sign_request(self._signing_key, self.server_name, destination, method, uri, content)],
        })
        if body is not None:
            headers.setRawHeaders(b"Content-Type", [b"application/json"])
        url = b"matrix-federation://" + destination.encode("ascii") + uri.encode("ascii")
        attempt_timeout = timeout if timeout is not None else self._settings.client_timeout_ms / 1000
        limit = max_response_size or self._max_response_size

        attempt = 0
        while True:
            try:
                code, response_headers, response_body = await self._attempt(
                    method, url, headers, body, attempt_timeout, limit, destination
                )
            except RequestSendFailed as e:
                if not e.can_retry or attempt >= max_retries:
                    raise
                logger.info("%s %s%s failed (%s); retry %d of %d", method, destination, path, e.reason,
                            attempt + 1, max_retries)
            else:
                if 200 <= code < 300:
                    return response_headers, response_body
                error = HttpResponseException.from_body(code, response_body)
                if code not in _RETRYABLE_STATUS or attempt >= max_retries:
                    raise error
                logger.info("%s %s%s answered %d; retry %d of %d", method, destination, path, code,
                            attempt + 1, max_retries)
            await self._clock.sleep(self._backoff(attempt, max_delay_s))
            attempt += 1

    def _backoff(self, attempt: int, max_delay_s: float) -> float:
        delay = min(max_delay_s, RETRY_BASE_DELAY_S * 2**attempt)
        return float(delay * self._rng.uniform(0.8, 1.2))

    async def _attempt(
        self, method: str, url: bytes, headers: Headers, body: Optional[bytes], timeout: float, limit: int,
        destination: str,
    ) -> tuple[int, Headers, bytes]:
        reactor: Any = self._clock.reactor
        start = self._clock.time()
        guard = _CancelGuard()
        try:
            d = self.agent.request(method.encode("ascii"), url, headers, BytesProducer(body) if body else None)
            d.addTimeout(timeout, reactor, onTimeoutCancel=_timed_out)
            response = await guard.wrap(d)
            remaining = max(0.001, timeout - (self._clock.time() - start))
            body_d = read_body_limited(response, limit)
            body_d.addTimeout(remaining, reactor, onTimeoutCancel=_timed_out)
            response_body = await guard.wrap(body_d)
        except Exception as e:
            if guard.cancelled:
                _requests.labels(method, "cancelled").inc()
                raise defer.CancelledError() from None  # our caller gave up: never turn that into a retry
            raise self._send_failure(method, destination, timeout, e) from None
        finally:
            _duration.labels(method).observe(self._clock.time() - start)
        _requests.labels(method, str(response.code)).inc()
        logger.debug("%s %s -> %d", method, url.decode("ascii", "replace"), response.code)
        return response.code, response.headers, response_body

    @staticmethod
    def _send_failure(method: str, destination: str, timeout: float, e: Exception) -> RequestSendFailed:
        """What a failed attempt means for the caller (and whether a retry may help)."""
        _requests.labels(method, "error").inc()
        if isinstance(e, BodyTooLargeError):
            return ResponseTooLargeError(destination, str(e))
        if isinstance(e, IPBlacklistedError):
            return RequestSendFailed(destination, str(e), can_retry=False)
        if isinstance(e, (_AttemptTimedOut, defer.TimeoutError)):
            return RequestSendFailed(destination, f"no complete response within {timeout:g}s", can_retry=True)
        if isinstance(e, ValueError):  # discovery: the name does not lead anywhere usable
            return RequestSendFailed(destination, str(e), can_retry=False)
        return RequestSendFailed(destination, f"{type(e).__name__}: {e}", can_retry=True)

    @staticmethod
    def _decode_body(destination: str, body: bytes) -> str:
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestSendFailed(destination, "the response is not JSON", can_retry=False) from None

    @staticmethod
    def _parse_json_text(destination: str, text: str) -> JsonDict:
        try:
            parsed = json.loads(text, parse_constant=_reject_constant)
        except ValueError:
            raise RequestSendFailed(destination, "the response is not JSON", can_retry=False) from None
        if not isinstance(parsed, dict):
            raise RequestSendFailed(destination, "the response is not a JSON object", can_retry=False)
        return parsed


class _AttemptTimedOut(Exception):
    pass


class _CancelGuard:
    """Tells a cancellation by our caller apart from the failures it causes below us.

    Cancelling a request makes Twisted's HTTP client fail with a connection
    error rather than ``CancelledError``; awaiting through ``wrap`` records
    that the cancel came from above, so the attempt is not retried.
    """

    def __init__(self) -> None:
        self.cancelled = False

    def wrap(self, d: "defer.Deferred[T]") -> "defer.Deferred[T]":
        def cancel(_wrapper: "defer.Deferred[T]") -> None:
            self.cancelled = True
            d.cancel()

        wrapper: defer.Deferred[T] = defer.Deferred(cancel)

        def relay(result: Any) -> None:
            if not wrapper.called:
                if isinstance(result, Failure):
                    wrapper.errback(result)
                else:
                    wrapper.callback(result)

        d.addBoth(relay)
        return wrapper


def _timed_out(result: object, timeout: float) -> Any:
    """``addTimeout``'s hook: whatever the cancelled request failed with, it timed out."""
    raise _AttemptTimedOut()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
