"""The JSON resource: routing, error JSON, CORS, body limits, raw responses, metrics."""

from __future__ import annotations

import io
from typing import Any, Optional

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.api.errors import Codes, LimitExceededError, MatrixError, NotFoundError
from matrixd.app.listeners import build_json_resource
from matrixd.http.request import MatrixRequest, current_request_id, redact_uri
from matrixd.http.server import (
    JsonResource,
    RestServlet,
    client_patterns,
    federation_patterns,
    media_patterns,
    respond_with_bytes,
    respond_with_file,
)
from matrixd.metrics import REGISTRY
from matrixd.testing.http import FakeChannel, make_reactor, make_request, make_site
from matrixd.types import JsonDict
from matrixd.util.clock import Clock


class EchoServlet(RestServlet):
    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]*)/echo/(?P<thing>[^/]*)")

    async def on_GET(self, request: MatrixRequest, room_id: str, thing: str) -> tuple[int, JsonDict]:
        return 200, {"room_id": room_id, "thing": thing}

    async def on_PUT(self, request: MatrixRequest, room_id: str, thing: str) -> tuple[int, JsonDict]:
        return 201, {"put": True}

    async def on_POST(self, request: MatrixRequest, room_id: str, thing: str) -> tuple[int, JsonDict]:
        request.setHeader(b"Cache-Control", b"max-age=60")
        return 200, {}


class FailingServlet(RestServlet):
    PATTERNS = client_patterns("/fail/(?P<kind>[a-z_]+)")

    async def on_GET(self, request: MatrixRequest, kind: str) -> tuple[int, JsonDict]:
        if kind == "not_found":
            raise NotFoundError("No such thing")
        if kind == "limited":
            raise LimitExceededError(retry_after_ms=2500)
        if kind == "extra":
            raise MatrixError(400, "Bad", Codes.INVALID_PARAM, {"field": "x"})
        if kind == "bug":
            raise KeyError("secret internal detail")
        if kind == "unserialisable":
            return 200, {"value": object()}
        raise AssertionError(kind)


class RawServlet(RestServlet):
    PATTERNS = client_patterns("/raw/(?P<kind>[a-z]+)")

    async def on_GET(self, request: MatrixRequest, kind: str) -> None:
        if kind == "bytes":
            respond_with_bytes(request, 200, b"hello", b"text/plain", {"X-Custom": "1"})
        elif kind == "file":
            await respond_with_file(request, 200, b"application/octet-stream", io.BytesIO(b"x" * 200_000), 200_000)
        # kind == "nothing": forget to write (a servlet bug)


class _DisconnectingFile(io.BytesIO):
    """A file that makes the client disconnect once ``at`` bytes have been read."""

    def __init__(self, data: bytes, at: int) -> None:
        super().__init__(data)
        self.at = at
        self.channel: Optional[FakeChannel] = None

    def read(self, size: Optional[int] = -1) -> bytes:
        if self.channel is not None and self.tell() >= self.at:
            channel, self.channel = self.channel, None
            channel.disconnect()
        return super().read(size)


class StreamServlet(RestServlet):
    PATTERNS = client_patterns("/stream")

    def __init__(self, file: _DisconnectingFile) -> None:
        self.file = file
        self.returned = False

    async def on_GET(self, request: MatrixRequest) -> None:
        await respond_with_file(request, 200, b"application/octet-stream", self.file, 1_000_000)
        self.returned = True


class SleepServlet(RestServlet):
    """Waits on the injected clock, like a long-poll."""

    PATTERNS = client_patterns("/sleep/(?P<seconds>[0-9]+)")
    CANCEL_ON_DISCONNECT = frozenset({"GET"})

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.cancelled = 0
        self.finished = 0
        self.seen_request_ids: list[str] = []

    async def on_GET(self, request: MatrixRequest, seconds: str) -> tuple[int, JsonDict]:
        self.seen_request_ids.append(current_request_id.get())
        try:
            await self.clock.sleep(int(seconds))
        except defer.CancelledError:
            self.cancelled += 1
            raise
        self.seen_request_ids.append(current_request_id.get())
        self.finished += 1
        return 200, {"slept": int(seconds)}

    async def on_POST(self, request: MatrixRequest, seconds: str) -> tuple[int, JsonDict]:
        # Not in CANCEL_ON_DISCONNECT: runs to completion even if the client leaves.
        await self.clock.sleep(int(seconds))
        self.finished += 1
        return 200, {}


class JsonResourceTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.reactor = make_reactor()
        self.clock = Clock(self.reactor)
        self.resource = JsonResource()
        self.sleeper = SleepServlet(self.clock)
        for servlet in (EchoServlet(), FailingServlet(), RawServlet(), self.sleeper):
            servlet.register(self.resource)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return make_request(self.reactor, self.resource, method, path, **kwargs)

    # -- routing ---------------------------------------------------------------

    def test_routes_to_servlet_with_url_decoded_path_args(self) -> None:
        """Named groups are matched on the raw path and passed URL-decoded."""
        channel = self.request("GET", "/_matrix/client/v3/rooms/%21abc%3Aexample.org/echo/a%2Fb%20c")
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(channel.json_body, {"room_id": "!abc:example.org", "thing": "a/b c"})

    def test_path_args_decode_utf8(self) -> None:
        """Percent-encoded UTF-8 in a path argument becomes the Unicode string."""
        channel = self.request("GET", "/_matrix/client/r0/rooms/x/echo/%E2%98%83")
        self.assertEqual(channel.json_body["thing"], "\u2603")

    def test_invalid_utf8_in_path_arg_is_400(self) -> None:
        """A path argument that is not UTF-8 after decoding is the client's error."""
        channel = self.request("GET", "/_matrix/client/v3/rooms/x/echo/%FF")
        self.assertEqual(channel.code, 400)
        self.assertEqual(channel.json_body["errcode"], "M_INVALID_PARAM")

    def test_method_selects_callback(self) -> None:
        """Each on_<METHOD> is routed separately and its status code is used."""
        channel = self.request("PUT", "/_matrix/client/v3/rooms/x/echo/y", content={})
        self.assertEqual(channel.code, 201)
        self.assertEqual(channel.json_body, {"put": True})

    def test_unknown_path_is_404_unrecognized(self) -> None:
        """Paths no servlet claims answer 404 M_UNRECOGNIZED."""
        channel = self.request("GET", "/_matrix/client/v3/nothing/here")
        self.assertEqual(channel.code, 404)
        self.assertEqual(channel.json_body["errcode"], "M_UNRECOGNIZED")

    def test_known_path_wrong_method_is_405_unrecognized(self) -> None:
        """A known path with an unhandled method answers 405 M_UNRECOGNIZED with Allow."""
        channel = self.request("DELETE", "/_matrix/client/v3/rooms/x/echo/y")
        self.assertEqual(channel.code, 405)
        self.assertEqual(channel.json_body["errcode"], "M_UNRECOGNIZED")
        self.assertEqual(channel.headers.getRawHeaders(b"Allow"), [b"GET, POST, PUT"])

    def test_unversioned_or_wrong_version_paths_do_not_match(self) -> None:
        """client_patterns only matches the listed versions, and the whole path."""
        self.assertEqual(self.request("GET", "/_matrix/client/v2/rooms/x/echo/y").code, 404)
        self.assertEqual(self.request("GET", "/_matrix/client/v3/rooms/x/echo/y/extra").code, 404)

    def test_head_is_served_by_on_get_without_body(self) -> None:
        """HEAD uses the GET route and sends headers only."""
        channel = self.request("HEAD", "/_matrix/client/v3/rooms/x/echo/y")
        self.assertEqual(channel.code, 200)
        self.assertTrue(channel.transport.value().endswith(b"\r\n\r\n"))

    def test_duplicate_registration_is_refused(self) -> None:
        """Two servlets claiming the same method and pattern is a wiring error."""
        with self.assertRaises(ValueError):
            EchoServlet().register(self.resource)

    def test_pattern_helpers(self) -> None:
        """The prefix helpers produce anchored patterns for each version listed."""
        (p,) = client_patterns("/sync", releases=("v3",), v1=True, unstable=True)
        for path in ("/_matrix/client/v3/sync", "/_matrix/client/v1/sync", "/_matrix/client/unstable/sync"):
            self.assertIsNotNone(p.match(path))
        self.assertIsNone(p.match("/_matrix/client/r0/sync"))
        (f,) = federation_patterns("/send/(?P<txn_id>[^/]*)")
        self.assertEqual(f.match("/_matrix/federation/v1/send/abc").groupdict(), {"txn_id": "abc"})  # type: ignore[union-attr]
        (m,) = media_patterns("/config")
        self.assertIsNotNone(m.match("/_matrix/media/v3/config"))
        with self.assertRaises(ValueError):
            client_patterns("/x", releases=())

    # -- errors ----------------------------------------------------------------

    def test_matrix_error_becomes_error_json(self) -> None:
        """A MatrixError's status and errcode reach the client as Matrix error JSON."""
        channel = self.request("GET", "/_matrix/client/v3/fail/not_found")
        self.assertEqual(channel.code, 404)
        self.assertEqual(channel.json_body, {"errcode": "M_NOT_FOUND", "error": "No such thing"})

    def test_error_extra_fields_and_headers(self) -> None:
        """additional_fields are merged into the body and error headers are sent."""
        channel = self.request("GET", "/_matrix/client/v3/fail/limited")
        self.assertEqual(channel.code, 429)
        self.assertEqual(channel.json_body["errcode"], "M_LIMIT_EXCEEDED")
        self.assertEqual(channel.json_body["retry_after_ms"], 2500)
        self.assertEqual(channel.headers.getRawHeaders(b"Retry-After"), [b"3"])
        channel = self.request("GET", "/_matrix/client/v3/fail/extra")
        self.assertEqual(channel.json_body, {"errcode": "M_INVALID_PARAM", "error": "Bad", "field": "x"})

    def test_unexpected_exception_is_logged_500_without_internals(self) -> None:
        """Any other exception is logged with the request id and answered 500 M_UNKNOWN."""
        with self.assertLogs("matrixd.http.server", level="ERROR") as logs:
            channel = self.request("GET", "/_matrix/client/v3/fail/bug")
        self.assertEqual(channel.code, 500)
        self.assertEqual(channel.json_body, {"errcode": "M_UNKNOWN", "error": "Internal server error"})
        self.assertNotIn(b"secret", channel.result_body)
        self.assertIn(f"[{channel.request.request_id}]", logs.output[0])
        self.assertIn("secret internal detail", "\n".join(logs.output))

    def test_unserialisable_result_is_500(self) -> None:
        """A body that cannot be JSON-encoded is a bug reported as 500, not a hang."""
        with self.assertLogs("matrixd.http.server", level="ERROR"):
            channel = self.request("GET", "/_matrix/client/v3/fail/unserialisable")
        self.assertEqual(channel.code, 500)
        self.assertEqual(channel.json_body["errcode"], "M_UNKNOWN")

    # -- CORS, JSON format -----------------------------------------------------

    def test_cors_headers_on_success_and_error(self) -> None:
        """Every response carries the spec's recommended CORS headers."""
        for path in ("/_matrix/client/v3/rooms/x/echo/y", "/nope", "/_matrix/client/v3/fail/bug"):
            with self.assertLogs("matrixd", level="INFO"):
                channel = self.request("GET", path)
            self.assertEqual(channel.headers.getRawHeaders(b"Access-Control-Allow-Origin"), [b"*"])
            methods = channel.headers.getRawHeaders(b"Access-Control-Allow-Methods")[0]
            for method in (b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS"):
                self.assertIn(method, methods)
            allowed = channel.headers.getRawHeaders(b"Access-Control-Allow-Headers")[0]
            for header in (b"X-Requested-With", b"Content-Type", b"Authorization"):
                self.assertIn(header, allowed)

    def test_options_preflight_is_200_on_any_path(self) -> None:
        """OPTIONS is answered 200 with CORS headers, even for unknown paths."""
        for path in ("/_matrix/client/v3/rooms/x/echo/y", "/completely/unknown"):
            channel = self.request("OPTIONS", path)
            self.assertEqual(channel.code, 200)
            self.assertEqual(channel.headers.getRawHeaders(b"Access-Control-Allow-Origin"), [b"*"])

    def test_json_response_is_compact_utf8_with_content_type(self) -> None:
        """Responses are compact UTF-8 JSON (no ASCII escapes) labelled application/json."""
        channel = self.request("GET", "/_matrix/client/v3/rooms/x/echo/%E2%98%83")
        self.assertEqual(channel.headers.getRawHeaders(b"Content-Type"), [b"application/json"])
        self.assertEqual(channel.result_body, '{"room_id":"x","thing":"\u2603"}'.encode())
        self.assertEqual(
            channel.headers.getRawHeaders(b"Content-Length"), [str(len(channel.result_body)).encode()]
        )

    def test_json_responses_are_not_cacheable_unless_servlet_says(self) -> None:
        """JSON gets Cache-Control no-store by default; a servlet's own header wins."""
        channel = self.request("GET", "/_matrix/client/v3/rooms/x/echo/y")
        self.assertEqual(channel.headers.getRawHeaders(b"Cache-Control"), [b"no-cache, no-store, must-revalidate"])
        channel = self.request("POST", "/_matrix/client/v3/rooms/x/echo/y", content={})
        self.assertEqual(channel.headers.getRawHeaders(b"Cache-Control"), [b"max-age=60"])

    # -- body size -------------------------------------------------------------

    def test_body_over_limit_is_413(self) -> None:
        """A declared body over the listener's limit answers 413 M_TOO_LARGE."""
        site = make_site(self.reactor, self.resource, max_request_body_size=100)
        channel = make_request(self.reactor, site, "PUT", "/_matrix/client/v3/rooms/x/echo/y", content=b"x" * 101)
        self.assertEqual(channel.code, 413)
        self.assertEqual(channel.json_body["errcode"], "M_TOO_LARGE")
        channel = make_request(self.reactor, site, "PUT", "/_matrix/client/v3/rooms/x/echo/y", content=b"x" * 100)
        self.assertEqual(channel.code, 201)

    def test_chunked_body_over_limit_is_413(self) -> None:
        """A chunked body is counted as it arrives and refused once over the limit."""
        site = make_site(self.reactor, self.resource, max_request_body_size=100)
        body = b"".join(b"%x\r\n%s\r\n" % (60, b"y" * 60) for _ in range(3)) + b"0\r\n\r\n"
        channel = make_request(
            self.reactor, site, "PUT", "/_matrix/client/v3/rooms/x/echo/y", content=body,
            headers={"Transfer-Encoding": "chunked"},
        )
        self.assertEqual(channel.code, 413)
        self.assertEqual(channel.json_body["errcode"], "M_TOO_LARGE")

    # -- raw responses ---------------------------------------------------------

    def test_raw_servlet_writes_its_own_response(self) -> None:
        """A servlet returning None after respond_with_bytes sends its bytes as they are."""
        channel = self.request("GET", "/_matrix/client/v3/raw/bytes")
        self.assertEqual(channel.code, 200)
        self.assertEqual(channel.result_body, b"hello")
        self.assertEqual(channel.headers.getRawHeaders(b"Content-Type"), [b"text/plain"])
        self.assertEqual(channel.headers.getRawHeaders(b"X-Custom"), [b"1"])
        self.assertEqual(channel.headers.getRawHeaders(b"Access-Control-Allow-Origin"), [b"*"])

    def test_respond_with_file_streams_the_whole_file(self) -> None:
        """respond_with_file streams a file larger than one chunk completely."""
        channel = self.request("GET", "/_matrix/client/v3/raw/file")
        self.assertEqual(channel.code, 200)
        self.assertEqual(channel.result_body, b"x" * 200_000)

    def test_respond_with_file_stops_when_client_disconnects(self) -> None:
        """A client leaving mid-download stops the file transfer and the servlet returns."""
        file = _DisconnectingFile(b"z" * 1_000_000, at=128 * 1024)
        servlet = StreamServlet(file)
        servlet.register(self.resource)
        channel = FakeChannel(self.reactor, make_site(self.reactor, self.resource), "127.0.0.1")
        file.channel = channel
        with self.assertLogs("matrixd", level="INFO"):
            channel.send(b"GET /_matrix/client/v3/stream HTTP/1.1\r\nHost: t\r\n\r\n")
            self.reactor.advance(1)
        self.assertTrue(servlet.returned)
        self.assertLess(len(channel.transport.value()), 200 * 1024)
        self.assertLess(file.tell(), 200 * 1024)

    def test_returning_none_without_writing_is_500(self) -> None:
        """Returning None without writing is a servlet bug, reported as 500."""
        with self.assertLogs("matrixd.http.server", level="ERROR"):
            channel = self.request("GET", "/_matrix/client/v3/raw/nothing")
        self.assertEqual(channel.code, 500)

    # -- time, disconnects, request ids ---------------------------------------

    def test_handler_waiting_on_clock_completes_when_advanced(self) -> None:
        """A handler sleeping on the injected clock answers once the fake clock passes."""
        channel = self.request("GET", "/_matrix/client/v3/sleep/5", await_result=False)
        self.reactor.advance(4.9)
        self.assertFalse(channel.is_finished())
        self.reactor.advance(0.2)
        self.assertTrue(channel.is_finished())
        self.assertEqual(channel.json_body, {"slept": 5})

    def test_request_id_follows_the_handler_across_awaits(self) -> None:
        """current_request_id is the request's id before and after the handler awaits."""
        channel = self.request("GET", "/_matrix/client/v3/sleep/1")
        self.assertEqual(channel.code, 200)
        rid = channel.request.request_id
        self.assertTrue(rid.startswith("GET-"))
        self.assertEqual(self.sleeper.seen_request_ids, [rid, rid])
        self.assertEqual(current_request_id.get(), "-")

    def test_disconnect_cancels_cancellable_handler(self) -> None:
        """For methods in CANCEL_ON_DISCONNECT, a client disconnect cancels the handler."""
        channel = self.request("GET", "/_matrix/client/v3/sleep/30", await_result=False)
        self.reactor.advance(1)
        with self.assertLogs("matrixd", level="INFO"):
            channel.disconnect()
        self.assertEqual(self.sleeper.cancelled, 1)
        self.reactor.advance(60)
        self.assertEqual(self.sleeper.finished, 0)

    def test_disconnect_lets_other_handlers_finish_and_drops_response(self) -> None:
        """Other handlers run to completion after a disconnect; nothing is written."""
        channel = self.request("POST", "/_matrix/client/v3/sleep/10", content={}, await_result=False)
        with self.assertLogs("matrixd", level="INFO"):
            channel.disconnect()
        written = channel.transport.value()
        self.reactor.advance(11)
        self.assertEqual(self.sleeper.finished, 1)
        self.assertEqual(channel.transport.value(), written)

    # -- metrics and logs ------------------------------------------------------

    def test_metrics_count_requests_by_servlet_method_and_code(self) -> None:
        """Each response increments the counter for its servlet, method and status."""
        labels = {"servlet": "EchoServlet", "method": "GET", "code": "200"}
        before = REGISTRY.get_sample_value("matrixd_http_server_requests_total", labels) or 0.0
        self.request("GET", "/_matrix/client/v3/rooms/x/echo/y")
        self.request("GET", "/_matrix/client/v3/rooms/x/echo/y")
        after = REGISTRY.get_sample_value("matrixd_http_server_requests_total", labels)
        self.assertEqual(after, before + 2)
        count = REGISTRY.get_sample_value(
            "matrixd_http_server_request_duration_seconds_count", {"servlet": "EchoServlet", "method": "GET"}
        )
        self.assertIsNotNone(count)
        unknown = {"servlet": "unrecognized", "method": "GET", "code": "404"}
        before = REGISTRY.get_sample_value("matrixd_http_server_requests_total", unknown) or 0.0
        self.request("GET", "/nope")
        self.assertEqual(REGISTRY.get_sample_value("matrixd_http_server_requests_total", unknown), before + 1)

    def test_metrics_servlet_labels_synapse_metrics_with_server_name(self) -> None:
        """/_matrixd/metrics with a server name adds Synapse's server_name label to synapse_* samples only."""
        self.request("GET", "/_matrix/client/v3/rooms/x/echo/y")
        site = make_site(self.reactor, build_json_resource(["metrics"], {}, "example.org"))
        text = make_request(self.reactor, site, "GET", "/_matrixd/metrics").result_body.decode()
        samples = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        received = [ln for ln in samples if ln.startswith("synapse_http_server_requests_received_total{")]
        self.assertTrue(received)
        self.assertTrue(all('server_name="example.org"' in ln for ln in received), received)
        self.assertTrue(all("server_name=" not in ln for ln in samples if ln.startswith("matrixd_")))
        plain = make_request(self.reactor, make_site(self.reactor, build_json_resource(["metrics"], {})),
                             "GET", "/_matrixd/metrics").result_body.decode()
        self.assertNotIn("server_name=", plain)

    def test_access_log_redacts_tokens_and_names_request(self) -> None:
        """The access log line has the request id and status but never the token."""
        with self.assertLogs("matrixd.access", level="INFO") as logs:
            channel = self.request("GET", "/_matrix/client/v3/rooms/x/echo/y?access_token=sekrit&a=1")
        line = logs.output[0]
        self.assertIn(channel.request.request_id, line)
        self.assertIn(" 200 ", line)
        self.assertNotIn("sekrit", line)
        self.assertIn("access_token=<redacted>&a=1", line)

    def test_redact_uri(self) -> None:
        """Secret query parameters are redacted wherever they appear; others are kept."""
        self.assertEqual(
            redact_uri(b"/p?a=1&access_token=x&loginToken=y&b=2&my_access_token=z"),
            "/p?a=1&access_token=<redacted>&loginToken=<redacted>&b=2&my_access_token=z",
        )

    def test_client_ip_uses_x_forwarded_for_only_when_trusted(self) -> None:
        """X-Forwarded-For is honoured on x_forwarded listeners and ignored elsewhere."""
        headers = {"X-Forwarded-For": "203.0.113.9, 10.0.0.1"}
        plain = make_request(self.reactor, self.resource, "GET", "/nope", headers=headers, client_ip="10.1.1.1")
        self.assertEqual(plain.request.get_client_ip(), "10.1.1.1")
        site = make_site(self.reactor, self.resource, x_forwarded=True)
        proxied = make_request(self.reactor, site, "GET", "/nope", headers=headers, client_ip="10.1.1.1")
        self.assertEqual(proxied.request.get_client_ip(), "203.0.113.9")


class RestServletTestCase(unittest.TestCase):
    def test_servlet_without_patterns_or_callbacks_is_refused(self) -> None:
        """register() refuses servlets with no PATTERNS or no on_<METHOD>."""

        class NoPatterns(RestServlet):
            async def on_GET(self, request: MatrixRequest) -> Optional[tuple[int, JsonDict]]:
                return 200, {}

        class NoCallbacks(RestServlet):
            PATTERNS = client_patterns("/x")

        with self.assertRaises(ValueError):
            NoPatterns().register(JsonResource())
        with self.assertRaises(ValueError):
            NoCallbacks().register(JsonResource())

