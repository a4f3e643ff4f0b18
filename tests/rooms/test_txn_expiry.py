"""Client transaction ids stay idempotent for a day (across restarts) and are then forgotten by the master."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from matrixd.app.listeners import build_json_resource
from matrixd.app.master import build_master_components, build_servlet_groups
from matrixd.crypto.keys import generate_signing_key
from matrixd.federation.inbound.txn_store import ReceivedTransactionStore
from matrixd.handlers.txn_expiry import DAY_MS
from matrixd.testing.homeserver import TestHomeserver
from matrixd.testing.http import make_site
from matrixd.util.clock import Clock
from tests.rooms.utils import RoomsTestCase, q

HOUR_S = 3600.0
#: A day and one cleanup interval (ten minutes) and a bit: every id stored a day ago is gone.
PAST_EXPIRY_S = DAY_MS / 1000 + 601


def restart(hs: TestHomeserver, testcase: Any) -> TestHomeserver:
    """A new master process on the same database (nothing in memory carried over)."""
    clock = Clock(hs.reactor)
    d = defer.ensureDeferred(build_master_components(hs.config, hs.reactor, clock, hs.components.db,
                                                     generate_signing_key("test")))
    components = testcase.successResultOf(d)
    groups = build_servlet_groups(hs.config, components)
    return TestHomeserver(hs.reactor, hs.config, components, make_site(hs.reactor, build_json_resource(
        sorted(groups), groups)), testcase)


class TxnIdExpiryTests(RoomsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room = self.create_room(self.alice_tok, preset="public_chat")
        self.path = f"/rooms/{q(self.room)}/send/m.room.message/abc"

    def put_message(self, body: str = "once") -> str:
        return str(self.req("PUT", self.path, {"msgtype": "m.text", "body": body}, self.alice_tok)["event_id"])

    def bodies_sent(self) -> list[str]:
        page = self.messages(self.room, self.alice_tok, dir="b", limit=10, filter={"types": ["m.room.message"]})
        return list(reversed(self.bodies(page["chunk"])))

    def test_send_txn_id_idempotent_for_a_day_then_forgotten(self) -> None:
        """A retry 23 hours later (cleanups having run) still returns the first event; after a day the
        master's cleanup forgets the id and the same txn id sends a new event."""
        first = self.put_message()
        self.hs.advance(23 * HOUR_S)
        self.assertEqual(self.put_message(), first)
        self.assertEqual(self.bodies_sent(), ["once"])
        self.hs.advance(PAST_EXPIRY_S - 23 * HOUR_S)
        rows = self.hs.run(self.hs.components.db.execute("t", "SELECT COUNT(*) FROM event_txn_ids"))
        self.assertEqual(rows[0][0], 0)
        second = self.put_message("again")
        self.assertNotEqual(second, first)
        self.assertEqual(self.bodies_sent(), ["once", "again"])

    def test_txn_id_survives_restart(self) -> None:
        """After a restart within the lifetime the same txn id returns the first event and sends nothing."""
        first = self.put_message()
        self.hs.advance(HOUR_S)
        self.hs = restart(self.hs, self)
        self.assertEqual(self.put_message(), first)
        self.assertEqual(self.bodies_sent(), ["once"])
        self.hs.advance(PAST_EXPIRY_S)  # the restarted master cleans up too
        self.assertNotEqual(self.put_message("later"), first)

    def test_to_device_txn_id_forgotten_after_a_day(self) -> None:
        """A repeated sendToDevice txn id is ignored within the day and delivered again once expired."""
        device_id = "TESTDEVICE"  # bob's only device (RoomsTestCase users have one)
        path = "/sendToDevice/m.test/same"
        for n in (1, 2):
            self.req("PUT", path, {"messages": {self.bob: {device_id: {"n": n}}}}, self.alice_tok)
        self.hs.advance(PAST_EXPIRY_S)
        self.req("PUT", path, {"messages": {self.bob: {device_id: {"n": 3}}}}, self.alice_tok)
        got, _ = self.hs.run(self.hs.components.e2e.sync_source.get_to_device_messages(self.bob, device_id, 0, 10))
        self.assertEqual([m["content"] for m in got], [{"n": 1}, {"n": 3}])

    def test_inbound_federation_txn_answers_expire(self) -> None:
        """The answers kept for retried inbound federation transactions are deleted after a day."""
        store = ReceivedTransactionStore(self.hs.components.db, Clock(self.hs.reactor))
        self.hs.run(store.set_response("remote.test", "t1", {"pdus": {}}))
        self.hs.advance(23 * HOUR_S)
        self.assertEqual(self.hs.run(store.get_response("remote.test", "t1")), {"pdus": {}})
        self.hs.advance(PAST_EXPIRY_S - 23 * HOUR_S)
        self.assertIsNone(self.hs.run(store.get_response("remote.test", "t1")))
