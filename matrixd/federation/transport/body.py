"""Request and response bodies for the outbound HTTP clients, without the global reactor.

Twisted's ``FileBodyProducer`` schedules on the global cooperator; requests
here are small JSON bodies, so they are written in one go instead. Response
bodies are read up to a size limit, past which the connection is dropped.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet import defer
from twisted.internet.interfaces import IConsumer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer, IResponse
from zope.interface import implementer


class BodyTooLargeError(Exception):
    """The response body exceeded the caller's limit."""


@implementer(IBodyProducer)
class BytesProducer:
    """A request body already in memory."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> "defer.Deferred[None]":
        consumer.write(self._body)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _LimitedBodyReader(Protocol):
    def __init__(self, deferred: "defer.Deferred[bytes]", max_size: int) -> None:
        self._deferred = deferred
        self._max_size = max_size
        self._chunks: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._deferred.called:
            return
        self._size += len(data)
        if self._size > self._max_size:
            self._deferred.errback(BodyTooLargeError(f"response body is larger than {self._max_size} bytes"))
            self.abort()
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        if self._deferred.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._deferred.callback(b"".join(self._chunks))
        else:
            self._deferred.errback(reason)

    def abort(self) -> None:
        transport: Any = self.transport
        if transport is None:
            return
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            transport.stopProducing()


def read_body_limited(response: IResponse, max_size: int) -> "defer.Deferred[bytes]":
    """The whole body of ``response``; fails with BodyTooLargeError past ``max_size`` bytes.

    Cancelling the Deferred drops the connection.
    """
    reader: Optional[_LimitedBodyReader] = None

    def cancel(_d: "defer.Deferred[bytes]") -> None:
        if reader is not None:
            reader.abort()

    d: defer.Deferred[bytes] = defer.Deferred(cancel)
    length = response.length
    if length is not UNKNOWN_LENGTH and isinstance(length, int) and length > max_size:
        d.errback(BodyTooLargeError(f"response body of {length} bytes is larger than {max_size} bytes"))
        response.deliverBody(_Discard())
        return d
    reader = _LimitedBodyReader(d, max_size)
    response.deliverBody(reader)
    return d


class _Discard(Protocol):
    """Drops a body we will not read (and with it the connection)."""

    def connectionMade(self) -> None:
        transport: Any = self.transport
        if transport is not None:
            transport.stopProducing()
