"""The internal HTTP API: MAC authentication, idempotency by transaction id, stream pages, the client's errors."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.api.errors import MatrixError
from matrixd.app.listeners import build_json_resource
from matrixd.config.workers import InstanceLocation
from matrixd.replication.http.auth import authorization_header
from matrixd.replication.http.client import MasterUnavailableError, ReplicationHttpClient
from matrixd.replication.http.server import ReplicationEndpoints, WriteResult, build_replication_servlets
from matrixd.replication.streams import StreamRegistry
from matrixd.testing.http import FakeChannel, make_reactor, make_request, make_site
from matrixd.types import JsonDict
from matrixd.util.clock import Clock
from tests.replication.harness import NotesLog

SECRET = "s3cret"


class InternalApiCase(unittest.TestCase):
    def setUp(self) -> None:
        self.reactor = make_reactor()
        self.reactor.advance(1_700_000_000)
        self.clock = Clock(self.reactor)
        self.calls: list[JsonDict] = []
        self.gate: defer.Deferred[None] | None = None
        endpoints = ReplicationEndpoints()

        async def count(args: JsonDict) -> WriteResult:
            self.calls.append(args)
            if self.gate is not None:
                await self.gate
            if args.get("refuse"):
                raise MatrixError(403, "no", "M_FORBIDDEN")
            return WriteResult({"n": len(self.calls)}, {"notes": 7})

        endpoints.register("count", count)
        self.notes = NotesLog()
        self.registry = StreamRegistry([self.notes.stream(writer=True)])
        servlets = build_replication_servlets(endpoints, lambda: self.registry, SECRET, self.clock)
        self.site = make_site(self.reactor, build_json_resource(["replication"], {"replication": servlets}))

    def post(self, uri: str, body: Any, *, secret: str = SECRET, ts: int | None = None,
             await_result: bool = True) -> FakeChannel:
        raw = json.dumps(body).encode()
        header = authorization_header(secret, method="POST", path=uri, worker_name="sync1",
                                      ts=self.clock.time_msec() if ts is None else ts, body=raw)
        return make_request(self.reactor, self.site, "POST", uri, raw, headers={"Authorization": header},
                            await_result=await_result)


class AuthTests(InternalApiCase):
    def test_signed_request_runs(self) -> None:
        """A correctly signed request runs the endpoint and returns its result and positions."""
        ch = self.post("/_matrixd/replication/count/t1", {"x": 1})
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body, {"result": {"n": 1}, "positions": {"notes": 7}})

    def test_missing_wrong_or_stale_authentication_is_refused(self) -> None:
        """No header, a MAC under another secret, or an old timestamp: 401 and nothing runs."""
        ch = make_request(self.reactor, self.site, "POST", "/_matrixd/replication/count/t1", {"x": 1})
        self.assertEqual((ch.code, ch.json_body["errcode"]), (401, "M_UNAUTHORIZED"))
        self.assertEqual(self.post("/_matrixd/replication/count/t2", {}, secret="wrong").code, 401)
        self.assertEqual(self.post("/_matrixd/replication/count/t3", {}, ts=self.clock.time_msec() - 3_600_000).code,
                         401)
        self.assertEqual(self.calls, [])

    def test_tampered_body_is_refused(self) -> None:
        """The MAC covers the body: changing it after signing is refused."""
        header = authorization_header(SECRET, method="POST", path="/_matrixd/replication/count/t1",
                                      worker_name="sync1", ts=self.clock.time_msec(), body=b'{"x":1}')
        ch = make_request(self.reactor, self.site, "POST", "/_matrixd/replication/count/t1", b'{"x":2}',
                          headers={"Authorization": header})
        self.assertEqual(ch.code, 401)

    def test_no_secret_means_no_internal_api(self) -> None:
        """A master without worker_replication_secret refuses every internal request."""
        servlets = build_replication_servlets(ReplicationEndpoints(), lambda: self.registry, None, self.clock)
        site = make_site(self.reactor, build_json_resource(["replication"], {"replication": servlets}))
        header = authorization_header(SECRET, method="POST", path="/_matrixd/replication/count/t1",
                                      worker_name="sync1", ts=self.clock.time_msec(), body=b"{}")
        ch = make_request(self.reactor, site, "POST", "/_matrixd/replication/count/t1", b"{}",
                          headers={"Authorization": header})
        self.assertEqual(ch.code, 403)

    def test_unknown_endpoint(self) -> None:
        """An endpoint nobody registered is a 404."""
        self.assertEqual(self.post("/_matrixd/replication/nope/t1", {}).code, 404)


class IdempotencyTests(InternalApiCase):
    def test_retry_returns_the_first_answer(self) -> None:
        """The same transaction id runs once; a retry gets the cached answer."""
        a = self.post("/_matrixd/replication/count/same", {"x": 1})
        b = self.post("/_matrixd/replication/count/same", {"x": 1})
        self.assertEqual(a.json_body, b.json_body)
        self.assertEqual(len(self.calls), 1)
        self.post("/_matrixd/replication/count/other", {"x": 1})
        self.assertEqual(len(self.calls), 2)

    def test_errors_are_remembered_too(self) -> None:
        """A refused request's error is the answer to its retries as well."""
        a = self.post("/_matrixd/replication/count/r", {"refuse": True})
        b = self.post("/_matrixd/replication/count/r", {"refuse": True})
        self.assertEqual((a.code, b.code), (403, 403))
        self.assertEqual(len(self.calls), 1)

    def test_concurrent_duplicate_waits_for_the_first(self) -> None:
        """A retry arriving while the first call runs waits for it instead of running again."""
        self.gate = defer.Deferred()
        a = self.post("/_matrixd/replication/count/slow", {}, await_result=False)
        b = self.post("/_matrixd/replication/count/slow", {}, await_result=False)
        self.reactor.advance(0)
        self.assertFalse(a.is_finished() or b.is_finished())
        self.gate.callback(None)
        a.await_result()
        b.await_result()
        self.assertEqual(a.json_body, b.json_body)
        self.assertEqual(len(self.calls), 1)

    def test_answers_expire(self) -> None:
        """After the retention time the same transaction id runs again."""
        self.post("/_matrixd/replication/count/old", {})
        self.reactor.advance(31 * 60)
        self.post("/_matrixd/replication/count/old", {})
        self.assertEqual(len(self.calls), 2)


class StreamPageTests(InternalApiCase):
    def get(self, uri: str) -> FakeChannel:
        header = authorization_header(SECRET, method="GET", path=uri, worker_name="sync1",
                                      ts=self.clock.time_msec(), body=b"")
        return make_request(self.reactor, self.site, "GET", uri, headers={"Authorization": header})

    def test_page_of_rows(self) -> None:
        """A worker can page a stream's rows from the writer (bounded by its current token)."""
        for text in ("a", "b", "c"):
            self.notes.write("!r", text)
        ch = self.get("/_matrixd/replication/streams/notes?from_token=0&to_token=100&limit=2")
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual([r[1]["text"] for r in ch.json_body["rows"]], ["a", "b"])
        self.assertTrue(ch.json_body["limited"])
        ch = self.get("/_matrixd/replication/streams/notes?from_token=2&to_token=100&limit=2")
        self.assertEqual(([r[1]["text"] for r in ch.json_body["rows"]], ch.json_body["new_token"]), (["c"], 3))

    def test_unknown_stream_and_bad_limit(self) -> None:
        """Unknown streams are 404, limits out of range 400."""
        self.assertEqual(self.get("/_matrixd/replication/streams/nope?from_token=0&to_token=1").code, 404)
        self.assertEqual(self.get("/_matrixd/replication/streams/notes?from_token=0&to_token=1&limit=0").code, 400)


class _SiteTransport:
    def __init__(self, case: InternalApiCase, statuses: list[int]) -> None:
        self.case = case
        self.statuses = statuses
        self.uris: list[str] = []

    def request(self, method: str, location: InstanceLocation, uri: str, headers: Any,
                body: bytes | None) -> "defer.Deferred[tuple[int, bytes]]":
        self.uris.append(uri)
        if self.statuses:
            return defer.succeed((self.statuses.pop(0), b'{"errcode":"M_UNKNOWN","error":"busy"}'))
        ch = make_request(self.case.reactor, self.case.site, method, uri, body, headers=dict(headers))
        return defer.succeed((ch.code, ch.result_body))


class ClientTests(InternalApiCase):
    def client(self, statuses: list[int]) -> tuple[ReplicationHttpClient, _SiteTransport]:
        transport = _SiteTransport(self, statuses)
        return ReplicationHttpClient(clock=self.clock, transport=transport, master=InstanceLocation("m", 1),
                                     worker_name="sync1", secret=SECRET), transport

    def test_call_and_matrix_error(self) -> None:
        """The client returns results and re-raises the master's Matrix errors unchanged."""
        client, _t = self.client([])
        result = self.successResultOf(defer.ensureDeferred(client.call("count", {})))
        self.assertEqual((result.result, dict(result.positions)), ({"n": 1}, {"notes": 7}))
        f = self.failureResultOf(defer.ensureDeferred(client.call("count", {"refuse": True})), MatrixError)
        self.assertEqual((f.value.code, f.value.errcode), (403, "M_FORBIDDEN"))

    def test_503_is_retried_with_the_same_txn_then_given_up(self) -> None:
        """Unavailable answers are retried under one transaction id; endless ones become a 503 for the client."""
        client, transport = self.client([503, 502])
        d = defer.ensureDeferred(client.call("count", {}))
        self.reactor.pump([1.0] * 10)
        self.assertEqual(self.successResultOf(d).result, {"n": 1})
        self.assertEqual(len(set(transport.uris)), 1)
        client, transport = self.client([503] * 20)
        d = defer.ensureDeferred(client.call("count", {}))
        self.reactor.pump([5.0] * 20)
        self.assertEqual(self.failureResultOf(d, MasterUnavailableError).value.code, 503)
        self.assertEqual(len(transport.uris), 8)
