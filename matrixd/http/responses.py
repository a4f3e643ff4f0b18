"""Writing HTTP responses: JSON, Matrix errors, raw bytes and streamed files.

All writers are no-ops once the client has disconnected or the response is
finished, so callers never need to check. Servlets that return ``(code, body)``
never call these; servlets that answer with something other than JSON (media,
metrics) call one of them and return ``None``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import IO, Any, Optional, Union

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from matrixd.api.errors import MatrixError
from matrixd.http.request import MatrixRequest

JsonBody = Union[dict[str, Any], list[Any]]

FILE_CHUNK_SIZE = 64 * 1024


def _json_default(o: object) -> Any:
    # Frozen mappings (event content, cached rows) serialise like dicts.
    if isinstance(o, Mapping):
        return dict(o)
    if isinstance(o, (set, frozenset)):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
)


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, as every JSON response body is sent."""
    return _ENCODER.encode(value).encode("utf-8")


def can_write(request: MatrixRequest) -> bool:
    """Whether a response may still be written to ``request``."""
    return not request.disconnected and not request.finished


def _start_response(
    request: MatrixRequest,
    code: int,
    content_type: bytes,
    length: Optional[int],
    headers: Optional[Mapping[str, str]],
) -> None:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", content_type)
    if length is not None:
        request.setHeader(b"Content-Length", b"%d" % length)
    for name, value in (headers or {}).items():
        request.setHeader(name, value)


def respond_with_bytes(
    request: MatrixRequest,
    code: int,
    body: bytes,
    content_type: bytes,
    headers: Optional[Mapping[str, str]] = None,
) -> None:
    """Write a complete response and finish the request."""
    if not can_write(request):
        return
    _start_response(request, code, content_type, len(body), headers)
    request.write(body)
    request.finish()


def respond_with_json(
    request: MatrixRequest,
    code: int,
    body: JsonBody,
    headers: Optional[Mapping[str, str]] = None,
) -> None:
    """Write ``body`` as JSON with ``Content-Type: application/json`` and finish.

    JSON API responses are not cacheable (they depend on who asks) unless the
    servlet set its own ``Cache-Control`` on the request before returning.
    """
    encoded = encode_json(body)
    if not can_write(request):
        return
    if not request.responseHeaders.hasHeader(b"Cache-Control"):
        request.setHeader(b"Cache-Control", b"no-cache, no-store, must-revalidate")
    respond_with_bytes(request, code, encoded, b"application/json", headers)


def respond_with_error(request: MatrixRequest, error: MatrixError) -> None:
    """Write the Matrix error JSON for ``error``, with its status and headers."""
    respond_with_json(request, error.code, error.to_json(), error.headers)


@implementer(IPushProducer)
class _FileProducer:
    """Copies a file into the response, pausing when the connection pushes back."""

    def __init__(self, file: IO[bytes], request: MatrixRequest) -> None:
        self._file = file
        self._request = request
        self._paused = False
        self._done = False
        self.finished: defer.Deferred[bool] = defer.Deferred()

    def start(self) -> None:
        # A paused producer is never resumed once the client is gone: stop then.
        self._request.notifyFinish().addErrback(lambda _f: self.stopProducing())
        self._request.registerProducer(self, True)
        self._pump()

    def _pump(self) -> None:
        while not self._paused and not self._done:
            if self._request.disconnected:
                self._finish(False)
                return
            chunk = self._file.read(FILE_CHUNK_SIZE)
            if not chunk:
                self._finish(True)
                return
            self._request.write(chunk)

    def _finish(self, complete: bool) -> None:
        if self._done:
            return
        self._done = True
        if not self._request.disconnected:
            self._request.unregisterProducer()
        self.finished.callback(complete)

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._pump()

    def stopProducing(self) -> None:
        self._finish(False)


async def respond_with_file(
    request: MatrixRequest,
    code: int,
    content_type: bytes,
    file: IO[bytes],
    length: Optional[int] = None,
    headers: Optional[Mapping[str, str]] = None,
) -> None:
    """Stream an open binary file as the response body, then finish the request.

    The file is read from its current position to the end and is not closed
    here. If the client disconnects midway the transfer stops and this returns.
    """
    if not can_write(request):
        return
    _start_response(request, code, content_type, length, headers)
    producer = _FileProducer(file, request)
    producer.start()
    complete = await producer.finished
    if complete and can_write(request):
        request.finish()
