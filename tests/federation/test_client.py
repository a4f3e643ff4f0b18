"""The outbound federation client over the in-memory network: signing, retries, timeouts, errors."""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.federation.transport.client import (
    FederationDeniedError,
    HttpResponseException,
    MatrixFederationClient,
    RequestSendFailed,
    encode_query_args,
)
from matrixd.http.request import MatrixRequest
from matrixd.http.server import respond_with_bytes
from tests.federation.utils import REMOTE, make_federating_homeserver


class ClientTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(self)
        self.client: MatrixFederationClient = self.hs.components.federation.client

    def run_request(self, coro: Any) -> Any:
        return self.network.run(coro)

    def attempts(self, path: str) -> int:
        return sum(1 for _m, uri in self.network.requests_sent if uri.startswith(f"matrix-federation://{REMOTE}{path}"))

    def test_signed_get_and_put(self) -> None:
        """Requests arrive authenticated as us (the remote checks our key), with query args and JSON bodies."""
        async def echo(origin: str, content: Optional[dict[str, Any]], request: MatrixRequest,
                       **kw: str) -> tuple[int, Any]:
            return 200, {"args": {k.decode(): [v.decode() for v in vs] for k, vs in (request.args or {}).items()},
                         "content": content, "thing": kw.get("thing")}

        self.remote.handle("GET", "/_matrix/federation/v1/echo/(?P<thing>[^/]*)", echo)
        self.remote.handle("PUT", "/_matrix/federation/v1/echo/(?P<thing>[^/]*)", echo)
        got = self.run_request(self.client.get_json(REMOTE, "/_matrix/federation/v1/echo/a%20b",
                                                    {"x": "1 2", "v": ["$a", "$b"], "flag": True}))
        self.assertEqual(got["args"], {"x": ["1 2"], "v": ["$a", "$b"], "flag": ["true"]})
        self.assertEqual(got["thing"], "a b")
        got = self.run_request(self.client.put_json(REMOTE, "/_matrix/federation/v1/echo/t", {"pdus": [1]}))
        self.assertEqual(got["content"], {"pdus": [1]})
        self.assertEqual([r.origin for r in self.remote.received], ["test", "test"])
        self.assertEqual(self.remote.received[1].content, {"pdus": [1]})

    def test_get_retried_on_503(self) -> None:
        """A GET answered 503 is retried with backoff until it succeeds."""
        answers = [503, 503, 200]

        async def flaky(request: MatrixRequest) -> tuple[int, Any]:
            code = answers.pop(0)
            return code, ({"ok": True} if code == 200 else {"errcode": "M_UNKNOWN", "error": "busy"})

        self.remote.handle_raw("GET", "/_matrix/federation/v1/flaky", flaky)
        start = self.hs.reactor.seconds()
        self.assertEqual(self.run_request(self.client.get_json(REMOTE, "/_matrix/federation/v1/flaky")), {"ok": True})
        self.assertEqual(self.attempts("/_matrix/federation/v1/flaky"), 3)
        self.assertGreaterEqual(self.hs.reactor.seconds() - start, 0.4 + 0.8)  # 0.5s then 1s, jittered by 20%

    def test_get_gives_up_after_max_retries(self) -> None:
        """After max_short_retries the last error is raised as HttpResponseException."""
        async def down(request: MatrixRequest) -> tuple[int, Any]:
            return 502, {"errcode": "M_UNKNOWN", "error": "bad gateway"}

        self.remote.handle_raw("GET", "/_matrix/federation/v1/down", down)
        with self.assertRaises(HttpResponseException) as cm:
            self.run_request(self.client.get_json(REMOTE, "/_matrix/federation/v1/down"))
        self.assertEqual(cm.exception.code, 502)
        self.assertEqual(self.attempts("/_matrix/federation/v1/down"), 4)

    def test_put_not_retried_unless_long_retries(self) -> None:
        """PUT/POST are sent once by default; long_retries retries them."""
        answers = [503, 200]

        async def flaky(request: MatrixRequest) -> tuple[int, Any]:
            return answers.pop(0), {}

        self.remote.handle_raw("PUT", "/_matrix/federation/v1/p", flaky)
        with self.assertRaises(HttpResponseException):
            self.run_request(self.client.put_json(REMOTE, "/_matrix/federation/v1/p", {}))
        answers[:] = [503, 200]
        self.assertEqual(self.run_request(self.client.put_json(REMOTE, "/_matrix/federation/v1/p", {},
                                                               long_retries=True)), {})
        self.assertEqual(self.attempts("/_matrix/federation/v1/p"), 3)

    def test_error_response_mapping(self) -> None:
        """A 4xx with a Matrix error becomes HttpResponseException carrying its errcode; not retried."""
        with self.assertRaises(HttpResponseException) as cm:
            self.run_request(self.client.get_json(REMOTE, "/_matrix/federation/v1/nothing"))
        e = cm.exception
        self.assertEqual((e.code, e.errcode), (404, "M_UNRECOGNIZED"))
        self.assertEqual(self.attempts("/_matrix/federation/v1/nothing"), 1)
        err = e.to_matrix_error()
        self.assertEqual((err.code, err.errcode), (404, "M_UNRECOGNIZED"))
        self.assertEqual(HttpResponseException(401, "M_UNAUTHORIZED", "no").to_matrix_error().code, 502)

    def test_bad_success_bodies(self) -> None:
        """A 200 that is not a JSON object is RequestSendFailed, not retried."""
        async def not_json(request: MatrixRequest) -> None:
            respond_with_bytes(request, 200, b"<html>", b"text/html")

        async def array(request: MatrixRequest) -> tuple[int, Any]:
            return 200, [1, 2]

        self.remote.handle_raw("GET", "/_matrix/federation/v1/html", not_json)
        self.remote.handle_raw("GET", "/_matrix/federation/v1/array", array)
        for path in ("/_matrix/federation/v1/html", "/_matrix/federation/v1/array"):
            with self.assertRaises(RequestSendFailed) as cm:
                self.run_request(self.client.get_json(REMOTE, path))
            self.assertFalse(cm.exception.can_retry)
            self.assertEqual(self.attempts(path), 1)

    def test_response_size_limit(self) -> None:
        """Bodies over max_response_size are refused."""
        async def big(request: MatrixRequest) -> tuple[int, Any]:
            return 200, {"x": "y" * 5000}

        self.remote.handle_raw("GET", "/_matrix/federation/v1/big", big)
        with self.assertRaises(RequestSendFailed) as cm:
            self.run_request(self.client.get_json(REMOTE, "/_matrix/federation/v1/big", max_response_size=1000))
        self.assertIn("larger than 1000", cm.exception.reason)

    def test_timeout(self) -> None:
        """A server that never answers makes the request fail after the timeout (each attempt)."""
        async def hang(request: MatrixRequest) -> None:
            await defer.Deferred()

        self.remote.handle_raw("GET", "/_matrix/federation/v1/hang", hang)
        start = self.hs.reactor.seconds()
        with self.assertRaises(RequestSendFailed) as cm:
            self.run_request(self.client.get_json(REMOTE, "/_matrix/federation/v1/hang", timeout=5, max_retries=1))
        self.assertIn("within 5s", cm.exception.reason)
        self.assertEqual(self.attempts("/_matrix/federation/v1/hang"), 2)
        self.assertGreaterEqual(self.hs.reactor.seconds() - start, 10)

    def test_cancellation_is_not_retried(self) -> None:
        """A caller cancelling its request gets CancelledError and no retry happens."""
        async def hang(request: MatrixRequest) -> None:
            await defer.Deferred()

        self.remote.handle_raw("GET", "/_matrix/federation/v1/hang", hang)
        d = defer.ensureDeferred(self.client.get_json(REMOTE, "/_matrix/federation/v1/hang"))
        self.hs.advance(1)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.hs.advance(300)
        self.assertEqual(self.attempts("/_matrix/federation/v1/hang"), 1)

    def test_unreachable(self) -> None:
        """A destination nobody answers for fails with a retryable RequestSendFailed after the retries."""
        with self.assertRaises(RequestSendFailed) as cm:
            self.run_request(self.client.get_json("nowhere.test", "/_matrix/federation/v1/version"))
        self.assertTrue(cm.exception.can_retry)
        self.assertEqual(self.network.requests_sent.count(
            ("GET", "matrix-federation://nowhere.test/_matrix/federation/v1/version")), 4)

    def test_bad_destination_and_path(self) -> None:
        """Invalid destinations are refused before sending; paths must be absolute, without a query."""
        with self.assertRaises(RequestSendFailed):
            self.run_request(self.client.get_json("bad name", "/x"))
        with self.assertRaises(ValueError):
            self.run_request(self.client.get_json(REMOTE, "/x?y=1"))
        self.assertEqual(self.network.requests_sent, [])

    def test_domain_whitelist(self) -> None:
        """With federation_domain_whitelist, other destinations are refused without a request."""
        hs, network, remote = make_federating_homeserver(self, {"federation_domain_whitelist": ["friend.test"]})
        with self.assertRaises(FederationDeniedError):
            network.run(hs.components.federation.client.get_json(remote.server_name, "/_matrix/key/v2/server"))
        self.assertEqual(network.requests_sent, [])

    def test_encode_query_args(self) -> None:
        """Query args: repeated values, booleans, ints, and percent-encoding of reserved characters."""
        self.assertEqual(encode_query_args({"a": ["$x:y", "b c"], "t": False, "n": 3}),
                         "a=%24x%3Ay&a=b%20c&t=false&n=3")
        self.assertEqual(encode_query_args(None), "")
