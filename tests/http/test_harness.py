"""The in-memory HTTP test harness and FakeAuth behave like the real thing."""

from __future__ import annotations

from twisted.internet import defer, threads
from twisted.trial import unittest

from matrixd.http.request import MatrixRequest
from matrixd.http.server import JsonResource, RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.testing.http import FakeAuth, TimedOutError, make_reactor, make_request
from matrixd.types import JsonDict


class _Servlet(RestServlet):
    PATTERNS = client_patterns("/harness/(?P<what>[a-z]+)")

    def __init__(self, auth: FakeAuth, reactor: object) -> None:
        self.auth = auth
        self.reactor = reactor

    async def on_GET(self, request: MatrixRequest, what: str) -> tuple[int, JsonDict]:
        if what == "never":
            await defer.Deferred()
        if what == "thread":
            value = await threads.deferToThreadPool(
                self.reactor, self.reactor.getThreadPool(), lambda: 41 + 1  # type: ignore[attr-defined]
            )
            return 200, {"value": value}
        if what == "user":
            requester = await self.auth.get_user_by_req(request)
            return 200, {"user_id": requester.user_id}
        return 200, {"headers": {k.decode(): [x.decode() for x in v] for k, v in request.requestHeaders.getAllRawHeaders()}}

    async def on_POST(self, request: MatrixRequest, what: str) -> tuple[int, JsonDict]:
        return 200, {"body": parse_json_object_from_request(request)}


class HarnessTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.reactor = make_reactor()
        self.auth = FakeAuth()
        self.resource = JsonResource()
        _Servlet(self.auth, self.reactor).register(self.resource)

    def test_dict_content_is_sent_as_json(self) -> None:
        """A dict body is JSON-encoded with a JSON content type."""
        channel = make_request(self.reactor, self.resource, "POST", "/_matrix/client/v3/harness/x", content={"a": 1})
        self.assertEqual(channel.json_body, {"body": {"a": 1}})

    def test_headers_and_access_token_are_sent(self) -> None:
        """Extra headers and the Bearer token reach the request."""
        channel = make_request(
            self.reactor, self.resource, "GET", "/_matrix/client/v3/harness/x",
            access_token="tok", headers={"X-Test": "yes"},
        )
        headers = channel.json_body["headers"]
        self.assertEqual(headers["X-Test"], ["yes"])
        self.assertEqual(headers["Authorization"], ["Bearer tok"])

    def test_thread_pool_work_runs_on_the_test_reactor(self) -> None:
        """deferToThreadPool on the test reactor completes without real threads."""
        channel = make_request(self.reactor, self.resource, "GET", "/_matrix/client/v3/harness/thread")
        self.assertEqual(channel.json_body, {"value": 42})

    def test_await_result_times_out(self) -> None:
        """A response that never comes raises TimedOutError after the fake timeout."""
        channel = make_request(self.reactor, self.resource, "GET", "/_matrix/client/v3/harness/never", await_result=False)
        with self.assertRaises(TimedOutError):
            channel.await_result(timeout=1)
        self.assertFalse(channel.is_finished())

    def test_fake_auth_users_and_guests(self) -> None:
        """FakeAuth resolves known tokens, refuses unknown ones and guests by default."""
        self.auth.add_token("a", "@a:test")
        self.auth.add_token("g", "@g:test", is_guest=True)
        path = "/_matrix/client/v3/harness/user"
        channel = make_request(self.reactor, self.resource, "GET", path, access_token="a")
        self.assertEqual(channel.json_body, {"user_id": "@a:test"})
        channel = make_request(self.reactor, self.resource, "GET", path, access_token="g")
        self.assertEqual(channel.code, 403)
        self.assertEqual(channel.json_body["errcode"], "M_GUEST_ACCESS_FORBIDDEN")
        channel = make_request(self.reactor, self.resource, "GET", path, access_token="zzz")
        self.assertEqual(channel.json_body["errcode"], "M_UNKNOWN_TOKEN")
        self.assertEqual(channel.json_body["soft_logout"], False)
