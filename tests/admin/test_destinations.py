"""Admin federation destinations: the federation sender's retry state and rooms per destination."""

from __future__ import annotations

from matrixd.storage.federation_sender import RetryState
from tests.admin.base import ADMIN, AdminTestCase


class DestinationAdminTests(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        out = self.hs.components.federation_out
        self.fstore = out.store
        now = self.hs.components.clock.time_msec()
        self.hs.run(self.fstore.set_retry_state("down.example", RetryState(now - 1000, 600_000, now - 5000)))
        self.hs.run(self.fstore.set_retry_state("flaky.example", RetryState(now - 9000, 60_000, now - 9000)))
        self.hs.run(self.fstore.set_last_successful_stream_ordering("up.example", 7))
        self.hs.run(self.fstore.record_events_queued(
            [("up.example", "!b:test", 5, "$e5"), ("up.example", "!a:test", 7, "$e7"),
             ("up.example", "!c:test", 3, "$e3")], None))

    def test_list_order_and_page(self) -> None:
        """The list pages with from/limit, orders by any column in either direction and searches names."""
        body = self.admin("GET", "/v1/federation/destinations")
        self.assertEqual([d["destination"] for d in body["destinations"]],
                         ["down.example", "flaky.example", "up.example"])
        self.assertEqual(body["total"], 3)
        down = body["destinations"][0]
        self.assertEqual((down["retry_interval"], down["last_successful_stream_ordering"]), (600_000, None))
        self.assertEqual(body["destinations"][2]["last_successful_stream_ordering"], 7)
        by_retry = self.admin("GET", "/v1/federation/destinations?order_by=retry_interval&dir=b")
        self.assertEqual([d["destination"] for d in by_retry["destinations"]],
                         ["down.example", "flaky.example", "up.example"])
        page = self.admin("GET", "/v1/federation/destinations?limit=2")
        self.assertEqual((len(page["destinations"]), page["next_token"]), (2, "2"))
        rest = self.admin("GET", "/v1/federation/destinations?limit=2&from=2")
        self.assertEqual([d["destination"] for d in rest["destinations"]], ["up.example"])
        self.assertNotIn("next_token", rest)
        found = self.admin("GET", "/v1/federation/destinations?destination=FLAKY")
        self.assertEqual([d["destination"] for d in found["destinations"]], ["flaky.example"])
        self.admin("GET", "/v1/federation/destinations?order_by=bogus", code=400)
        self.admin("GET", "/v1/federation/destinations?dir=x", code=400)

    def test_details_and_rooms(self) -> None:
        """One destination's details and the rooms we send it events of (paged, both directions)."""
        one = self.admin("GET", "/v1/federation/destinations/up.example")
        self.assertEqual((one["destination"], one["retry_interval"], one["failure_ts"]), ("up.example", 0, None))
        rooms = self.admin("GET", "/v1/federation/destinations/up.example/rooms")
        self.assertEqual(rooms["rooms"], [{"room_id": "!a:test", "stream_ordering": 7},
                                          {"room_id": "!b:test", "stream_ordering": 5},
                                          {"room_id": "!c:test", "stream_ordering": 3}])
        self.assertEqual(rooms["total"], 3)
        page = self.admin("GET", "/v1/federation/destinations/up.example/rooms?dir=b&limit=1")
        self.assertEqual((page["rooms"][0]["room_id"], page["next_token"]), ("!c:test", "1"))
        self.admin("GET", "/v1/federation/destinations/nowhere.example", code=404)
        self.admin("GET", "/v1/federation/destinations/nowhere.example/rooms", code=404)

    def test_reset_connection(self) -> None:
        """reset_connection clears the stored backoff and the sender's own copy; unknown destinations are 404."""
        sender = self.hs.components.federation_out.sender
        queue = sender._queue("down.example")  # the sender's in-memory queue, with the backoff loaded
        self.assertFalse(self.hs.run(queue._due()))
        self.assertTrue(queue.is_down())
        self.assertEqual(self.admin("POST", "/v1/federation/destinations/down.example/reset_connection", {}), {})
        after = self.admin("GET", "/v1/federation/destinations/down.example")
        self.assertEqual((after["retry_last_ts"], after["retry_interval"], after["failure_ts"]), (0, 0, None))
        state = self.hs.run(self.fstore.get_retry_state("down.example"))
        assert state is not None
        self.assertEqual(state.retry_interval, 0)
        self.assertFalse(queue.is_down())
        self.admin("POST", "/v1/federation/destinations/nowhere.example/reset_connection", {}, code=404)

    def test_non_admin_refused(self) -> None:
        """Every destinations endpoint is 403 M_FORBIDDEN for a non-admin, and nothing is reset."""
        for method, path in (("GET", "/v1/federation/destinations"),
                             ("GET", "/v1/federation/destinations/down.example"),
                             ("GET", "/v1/federation/destinations/down.example/rooms"),
                             ("POST", "/v1/federation/destinations/down.example/reset_connection")):
            ch = self.req(method, ADMIN + path, {} if method == "POST" else None, self.user_tok)
            self.assertEqual((ch.code, ch.json_body["errcode"]), (403, "M_FORBIDDEN"), path)
        self.assertEqual(self.admin("GET", "/v1/federation/destinations/down.example")["retry_interval"], 600_000)
