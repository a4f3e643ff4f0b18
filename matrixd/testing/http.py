"""Driving matrixd HTTP resources in memory, for endpoint tests.

``make_request`` feeds a real HTTP/1.1 request through Twisted's ``HTTPChannel``
and a ``MatrixSite`` into the resource, over an in-memory transport, and parses
the bytes that come back. Nothing touches the network or the global reactor:
handlers that sleep or time out run on the test's ``MemoryReactorClock``, which
``FakeChannel.await_result`` advances until the response is complete.

Example::

    reactor = make_reactor()
    resource = JsonResource()
    CapabilitiesServlet(config, FakeAuth({"tok": requester})).register(resource)
    channel = make_request(reactor, resource, "GET", "/_matrix/client/v3/capabilities",
                           access_token="tok")
    self.assertEqual(channel.code, 200, channel.result_body)
    self.assertIn("m.room_versions", channel.json_body["capabilities"])
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional, Union

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource

from matrixd.api.errors import AuthError, Codes, InvalidClientTokenError
from matrixd.http.request import MatrixRequest, MatrixSite
from matrixd.http.servlet import get_access_token_from_request
from matrixd.types import Requester

HeaderValue = Union[str, bytes]
HeadersArg = Union[Mapping[HeaderValue, HeaderValue], Iterable[tuple[HeaderValue, HeaderValue]]]


class TimedOutError(AssertionError):
    """The response did not complete within the fake-clock time allowed."""


class _SynchronousThreadPool:
    """Runs "threaded" work inline, so ``deferToThreadPool`` works on a memory reactor."""

    def callInThreadWithCallback(
        self, on_result: Optional[Callable[[bool, Any], object]], func: Callable[..., Any],
        *args: Any, **kwargs: Any,
    ) -> None:
        try:
            result = func(*args, **kwargs)
        except BaseException:
            if on_result is not None:
                on_result(False, Failure())  # type: ignore[no-untyped-call,unused-ignore]
            return
        if on_result is not None:
            on_result(True, result)

    def callInThread(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.callInThreadWithCallback(None, func, *args, **kwargs)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class TestReactor(MemoryReactorClock):
    """A ``MemoryReactorClock`` that also runs thread-pool work (inline, synchronously).

    ``callFromThread`` schedules on the fake clock; ``FakeChannel.await_result``
    (or ``reactor.advance(0)``) runs it.
    """

    __test__ = False  # not a trial test case, despite the name

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._pool = _SynchronousThreadPool()

    def getThreadPool(self) -> _SynchronousThreadPool:
        return self._pool

    def callInThread(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._pool.callInThread(func, *args, **kwargs)

    def callFromThread(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.callLater(0, func, *args, **kwargs)


def make_reactor() -> TestReactor:
    """A fresh fake reactor for one test."""
    return TestReactor()


def make_site(
    reactor: MemoryReactorClock,
    resource: IResource,
    *,
    max_request_body_size: int = 10 * 1024 * 1024,
    x_forwarded: bool = False,
) -> MatrixSite:
    """A ``MatrixSite`` for tests: no idle timeout, so the clock can jump freely."""
    return MatrixSite(
        resource,
        reactor,
        max_request_body_size=max_request_body_size,
        x_forwarded=x_forwarded,
        site_tag="test",
        timeout=None,
    )


class FakeChannel:
    """One request's connection: what the server wrote back, parsed on demand."""

    def __init__(self, reactor: MemoryReactorClock, site: MatrixSite, client_ip: str) -> None:
        self._reactor = reactor
        self.site = site
        self.transport = StringTransport(  # type: ignore[no-untyped-call,unused-ignore]
            peerAddress=IPv4Address("TCP", client_ip, 40000)
        )
        self._request: Optional[MatrixRequest] = None
        self.protocol: Any = site.buildProtocol(self.transport.getPeer())  # type: ignore[no-untyped-call]
        assert self.protocol is not None
        factory = self.protocol.requestFactory

        def capture(*args: Any) -> MatrixRequest:
            req: MatrixRequest = factory(*args)
            self._request = req
            return req

        self.protocol.requestFactory = capture
        self.protocol.makeConnection(self.transport)

    # -- driving ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def is_finished(self) -> bool:
        """Whether the response is complete (or the connection was closed)."""
        return self._request is not None and (
            bool(self._request.finished) or self.transport.disconnecting
        )

    def await_result(self, timeout: float = 10.0) -> None:
        """Advance the fake clock in 0.1s steps until the response is complete.

        Raises:
            TimedOutError: still incomplete after ``timeout`` fake seconds.
        """
        self._reactor.advance(0)
        deadline = self._reactor.seconds() + timeout
        while not self.is_finished():
            if self._reactor.seconds() >= deadline:
                raise TimedOutError(f"no response within {timeout}s of fake time")
            self._reactor.advance(0.1)

    def disconnect(self) -> None:
        """The client goes away (closes its connection)."""
        reason = Failure(ConnectionDone("client went away"))  # type: ignore[no-untyped-call,unused-ignore]
        self.protocol.connectionLost(reason)
        self._reactor.advance(0)

    # -- the response ----------------------------------------------------------

    @property
    def request(self) -> MatrixRequest:
        assert self._request is not None, "no request was received"
        return self._request

    def _parse(self) -> tuple[int, Headers, bytes]:
        raw: bytes = self.transport.value()  # type: ignore[no-untyped-call,unused-ignore]
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"no complete response head yet: {raw[:200]!r}")
        lines = head.split(b"\r\n")
        code = int(lines[0].split(b" ", 2)[1])
        headers = Headers()
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.addRawHeader(name.strip(), value.strip())
        if (headers.getRawHeaders(b"Transfer-Encoding") or [b""])[0].lower() == b"chunked":
            body = _dechunk(rest)
        elif headers.hasHeader(b"Content-Length"):
            body = rest[: int((headers.getRawHeaders(b"Content-Length") or [b"0"])[0])]
        else:
            body = rest
        return code, headers, body

    @property
    def code(self) -> int:
        """The response status code."""
        return self._parse()[0]

    @property
    def headers(self) -> Headers:
        """The response headers."""
        return self._parse()[1]

    @property
    def result_body(self) -> bytes:
        """The response body, de-chunked."""
        return self._parse()[2]

    @property
    def text_body(self) -> str:
        return self.result_body.decode("utf-8")

    @property
    def json_body(self) -> Any:
        """The response body parsed as JSON."""
        body = self.result_body
        try:
            return json.loads(body)
        except ValueError:
            raise AssertionError(f"response is not JSON: {body[:500]!r}") from None


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


def _header_items(headers: Optional[HeadersArg]) -> list[tuple[bytes, bytes]]:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [
        (k.encode("latin-1") if isinstance(k, str) else k, v.encode("latin-1") if isinstance(v, str) else v)
        for k, v in items
    ]


def make_request(
    reactor: MemoryReactorClock,
    site: Union[MatrixSite, IResource],
    method: Union[str, bytes],
    path: Union[str, bytes],
    content: Union[None, bytes, str, Mapping[str, Any], list[Any]] = None,
    access_token: Optional[str] = None,
    headers: Optional[HeadersArg] = None,
    await_result: bool = True,
    client_ip: str = "127.0.0.1",
) -> FakeChannel:
    """Send one request to ``site`` (a ``MatrixSite``, or a resource to wrap in one).

    Args:
        path: the request target, already percent-encoded, with any query string.
        content: a dict/list is sent as JSON, str as UTF-8, bytes as they are.
        access_token: sent as ``Authorization: Bearer <token>``.
        headers: extra request headers (a mapping, or pairs to repeat a header).
        await_result: advance the fake clock until the response completes
            (``FakeChannel.await_result``); pass False to drive it yourself.
    """
    if not isinstance(site, MatrixSite):
        site = make_site(reactor, site)
    method_b = method.encode("ascii") if isinstance(method, str) else method
    path_b = path.encode("utf-8") if isinstance(path, str) else path

    if content is None:
        body = b""
    elif isinstance(content, bytes):
        body = content
    elif isinstance(content, str):
        body = content.encode("utf-8")
    else:
        body = json.dumps(content).encode("utf-8")

    header_items = _header_items(headers)
    names = {k.lower() for k, _ in header_items}
    if b"host" not in names:
        header_items.append((b"Host", b"test.local"))
    if access_token is not None:
        header_items.append((b"Authorization", b"Bearer " + access_token.encode("ascii")))
    if b"content-length" not in names and b"transfer-encoding" not in names:
        header_items.append((b"Content-Length", b"%d" % len(body)))
    if isinstance(content, (Mapping, list)) and b"content-type" not in names:
        header_items.append((b"Content-Type", b"application/json"))

    channel = FakeChannel(reactor, site, client_ip)
    raw = method_b + b" " + path_b + b" HTTP/1.1\r\n"
    raw += b"".join(k + b": " + v + b"\r\n" for k, v in header_items)
    channel.send(raw + b"\r\n" + body)
    if await_result:
        channel.await_result()
    return channel


class FakeAuth:
    """An ``Auth`` with a fixed table of access tokens, for servlet tests.

    Follows the real contract: token extraction errors from the request,
    ``M_UNKNOWN_TOKEN`` for tokens not in the table, 403
    ``M_GUEST_ACCESS_FORBIDDEN`` for guests unless ``allow_guest``.
    """

    def __init__(self, tokens: Optional[Mapping[str, Requester]] = None) -> None:
        self.tokens: dict[str, Requester] = dict(tokens or {})

    def add_token(
        self, token: str, user_id: str, device_id: Optional[str] = "DEVICE", is_guest: bool = False
    ) -> Requester:
        requester = Requester(
            user_id=user_id, device_id=device_id, access_token_id=len(self.tokens) + 1, is_guest=is_guest
        )
        self.tokens[token] = requester
        return requester

    async def get_user_by_req(
        self, request: MatrixRequest, allow_guest: bool = False, allow_expired: bool = False
    ) -> Requester:
        token = get_access_token_from_request(request)
        requester = self.tokens.get(token)
        if requester is None:
            raise InvalidClientTokenError()
        if requester.is_guest and not allow_guest:
            raise AuthError(403, "Guest access not allowed", Codes.GUEST_ACCESS_FORBIDDEN)
        request.requester = requester
        return requester
