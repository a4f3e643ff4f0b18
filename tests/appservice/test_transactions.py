"""Transactions pushed to services: interest, order, retries, persistence across restarts, ephemeral opt-in."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from matrixd.appservice.sender import AppServiceTransactions
from tests.appservice.fake import HS_TOKEN, as_request, make_homeserver_with_service, registration

CREATE = "/_matrix/client/v3/createRoom"


class TransactionsTestCase(TestCase):
    def setUp(self) -> None:
        self.hs, self.fake = make_homeserver_with_service(self)
        self.alice, self.token = self.hs.create_user("alice")

    def _room_with_bot(self) -> str:
        room = self.hs.request("POST", CREATE, {}, access_token=self.token).json_body["room_id"]
        self.hs.request("POST", f"/_matrix/client/v3/rooms/{room}/invite", {"user_id": "@bridgebot:test"},
                        access_token=self.token)
        ch = as_request(self.hs, "POST", f"/_matrix/client/v3/rooms/{room}/join", {})
        self.assertEqual(ch.code, 200, ch.json_body)
        return str(room)

    def _send(self, room: str, body: str, txn: str) -> str:
        ch = self.hs.request("PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}",
                             {"msgtype": "m.text", "body": body}, access_token=self.token)
        self.assertEqual(ch.code, 200, ch.json_body)
        return str(ch.json_body["event_id"])

    def test_events_pushed_in_order(self) -> None:
        """Events of a room with a namespace member reach the service in order, client format, hs_token auth."""
        room = self._room_with_bot()
        ids = [self._send(room, f"m{i}", f"t{i}") for i in range(3)]
        txns = self.fake.transactions()
        self.assertTrue(txns)
        for i, txn in enumerate(txns):
            self.assertEqual(txn.path, f"/_matrix/app/v1/transactions/{i + 1}")
            self.assertEqual(txn.token, HS_TOKEN)
        events = self.fake.transaction_events()
        self.assertEqual([e["event_id"] for e in events][-3:], ids)
        self.assertEqual(events[-1]["content"], {"msgtype": "m.text", "body": "m2"})
        self.assertEqual(events[-1]["room_id"], room)
        self.assertIn("origin_server_ts", events[-1])
        # The invite of the bot (state_key in the namespace) is delivered too.
        self.assertIn(("m.room.member", "invite"),
                      [(e["type"], e["content"].get("membership")) for e in events])

    def test_uninteresting_events_not_pushed(self) -> None:
        """Rooms with nothing in the service's namespaces produce no transaction."""
        room = self.hs.request("POST", CREATE, {}, access_token=self.token).json_body["room_id"]
        self._send(room, "private", "p1")
        self.assertEqual(self.fake.transactions(), [])
        sender = self.hs.components.appservice.transactions.senders["bridge"]
        self.assertEqual(sender.position, self.hs.components.core.stores.stream_ids.get_current_token())

    def test_membership_change_updates_interest(self) -> None:
        """Once a namespace user joins, the room's later events are pushed (cache invalidated)."""
        room = self.hs.request("POST", CREATE, {}, access_token=self.token).json_body["room_id"]
        before = self._send(room, "before", "b1")
        self.hs.request("POST", f"/_matrix/client/v3/rooms/{room}/invite", {"user_id": "@bridgebot:test"},
                        access_token=self.token)
        as_request(self.hs, "POST", f"/_matrix/client/v3/rooms/{room}/join", {})
        after = self._send(room, "after", "a1")
        ids = [e["event_id"] for e in self.fake.transaction_events()]
        self.assertIn(after, ids)
        self.assertNotIn(before, ids)
        # And after the bot leaves, the room is of no interest anymore.
        as_request(self.hs, "POST", f"/_matrix/client/v3/rooms/{room}/leave", {})
        gone = self._send(room, "gone", "g1")
        self.assertNotIn(gone, [e["event_id"] for e in self.fake.transaction_events()])

    def test_retry_with_backoff_until_acknowledged(self) -> None:
        """A refused transaction is resent with the same id after 1s, 2s...; later events wait behind it."""
        room = self._room_with_bot()
        self.fake.requests.clear()
        self.fake.fail_transactions = 2
        first = self._send(room, "one", "r1")
        self.assertEqual(len(self.fake.transactions()), 1)
        second = self._send(room, "two", "r2")  # queued behind the failing transaction
        self.assertEqual(len(self.fake.transactions()), 1)
        self.hs.advance(1)
        self.assertEqual(len(self.fake.transactions()), 2)
        self.hs.advance(1.5)
        self.assertEqual(len(self.fake.transactions()), 2)  # backoff doubled to 2s
        self.hs.advance(0.5)
        txns = self.fake.transactions()
        self.assertEqual(len({t.path for t in txns[:3]}), 1, "retries reuse the txn id")
        self.assertEqual(txns[3].path.rsplit("/", 1)[1], str(int(txns[0].path.rsplit("/", 1)[1]) + 1))
        ids = [e["event_id"] for e in self.fake.transaction_events()]
        self.assertLess(ids.index(first), ids.index(second))
        self.assertEqual(ids.count(second), 1)

    def test_pending_transaction_survives_restart(self) -> None:
        """A transaction not acknowledged before a restart is resent with the same id and events."""
        room = self._room_with_bot()
        self.fake.requests.clear()
        self.fake.fail_transactions = 1000
        sent = self._send(room, "persisted", "x1")
        old = self.hs.components.appservice.transactions
        old.stop()
        failed = self.fake.transactions()[0]
        self.fake.fail_transactions = 0
        area = self.hs.components.appservice
        fresh = AppServiceTransactions(
            area.services, clock=self.hs.components.clock, api=area.api, store=area.store,
            events=self.hs.components.core.stores.events, interest=area.interest,
            current_token=self.hs.components.core.stores.stream_ids.get_current_token, server_name="test",
        )
        fresh.start()
        resent = self.fake.transactions()[-1]
        self.assertEqual(resent.path, failed.path)
        self.assertEqual([e["event_id"] for e in resent.body["events"]], [sent])
        pending = self.hs.run(area.store.get_pending("bridge"))
        self.assertIsNone(pending)


class NamespaceInterestTestCase(TestCase):
    def setUp(self) -> None:
        self.hs, self.fake = make_homeserver_with_service(
            self,
            registration(id="watcher", as_token="wa", hs_token="wh", sender_localpart="watcher", url="http://w",
                         namespaces={"aliases": [{"regex": "#watched:test", "exclusive": False}],
                                     "rooms": [{"regex": "!pinned.*", "exclusive": False}]}),
        )
        self.alice, self.token = self.hs.create_user("alice")

    def _send(self, room: str, txn: str) -> str:
        ch = self.hs.request("PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}",
                             {"msgtype": "m.text", "body": txn}, access_token=self.token)
        self.assertEqual(ch.code, 200, ch.json_body)
        return str(ch.json_body["event_id"])

    def _pushed(self) -> list[str]:
        return [e["event_id"] for e in self.fake.transaction_events()]

    def test_directory_alias_makes_room_interesting(self) -> None:
        """Adding a directory alias in the namespace makes the room's next events interesting at once."""
        room = self.hs.request("POST", CREATE, {}, access_token=self.token).json_body["room_id"]
        before = self._send(room, "w1")  # caches "not interested"
        ch = self.hs.request("PUT", "/_matrix/client/v3/directory/room/%23watched:test", {"room_id": room},
                             access_token=self.token)
        self.assertEqual(ch.code, 200, ch.json_body)
        after = self._send(room, "w2")
        self.assertNotIn(before, self._pushed())
        self.assertIn(after, self._pushed())
        self.assertTrue(all(t.token == "wh" for t in self.fake.transactions()))

    def test_canonical_alias_makes_room_interesting(self) -> None:
        """A canonical alias (state event) in the namespace makes the room interesting."""
        room = self.hs.request("POST", CREATE, {"room_alias_name": "watched"},
                               access_token=self.token).json_body["room_id"]
        self.assertIn(self._send(room, "c1"), self._pushed())

    def test_room_id_namespace(self) -> None:
        """The rooms namespace matches room ids."""
        service = self.hs.components.appservice.services[0]
        self.assertTrue(self.hs.run(self.hs.components.appservice.interest.is_interested_in_room(
            service, "!pinned123:test")))
        self.assertFalse(self.hs.run(self.hs.components.appservice.interest.is_interested_in_room(
            service, "!other:test")))


class EphemeralTestCase(TestCase):
    def setUp(self) -> None:
        self.hs, self.fake = make_homeserver_with_service(
            self,
            registration(receive_ephemeral=True),
            registration(id="plain", as_token="pa", hs_token="ph", sender_localpart="plainbot",
                         namespaces={"users": [{"regex": "@_plain_.*:test", "exclusive": False}]}),
        )
        _, self.token = self.hs.create_user("alice")

    def _notify(self, edu: dict[str, Any], **kwargs: Any) -> None:
        transactions = self.hs.components.appservice.transactions
        self.successResultOf(defer.ensureDeferred(transactions.notify_ephemeral(edu, **kwargs)))

    def test_ephemeral_only_for_opted_in_services(self) -> None:
        """Typing in a room the bridge is in reaches it under 'ephemeral'; the non-opted-in service gets none."""
        room = self.hs.request("POST", CREATE, {"invite": ["@bridgebot:test", "@plainbot:test"]},
                               access_token=self.token).json_body["room_id"]
        as_request(self.hs, "POST", f"/_matrix/client/v3/rooms/{room}/join", {})
        self.fake.requests.clear()
        typing = {"type": "m.typing", "room_id": room, "content": {"user_ids": ["@alice:test"]}}
        self._notify(typing, room_id=room)
        txns = self.fake.transactions()
        self.assertEqual(len(txns), 1)
        self.assertEqual(txns[0].token, HS_TOKEN)
        self.assertEqual(txns[0].body["ephemeral"], [typing])
        self.assertEqual(txns[0].body["events"], [])

    def test_presence_by_user_namespace(self) -> None:
        """Presence of a namespace user reaches the opted-in service without any room."""
        presence = {"type": "m.presence", "sender": "@_bridge_x:test", "content": {"presence": "online"}}
        self._notify(presence, user_ids=["@_bridge_x:test"])
        self._notify({"type": "m.presence", "sender": "@nobody:test", "content": {}}, user_ids=["@nobody:test"])
        bodies = [t.body["ephemeral"] for t in self.fake.transactions()]
        self.assertEqual(bodies, [[presence]])


class EphemeralStreamsTestCase(TestCase):
    """The sync area's typing, receipt and presence streams reach opted-in services."""

    def setUp(self) -> None:
        self.hs, self.fake = make_homeserver_with_service(self, registration(receive_ephemeral=True))
        self.alice, self.token = self.hs.create_user("alice")
        self.room = self.hs.request("POST", CREATE, {"invite": ["@bridgebot:test"]},
                                    access_token=self.token).json_body["room_id"]
        as_request(self.hs, "POST", f"/_matrix/client/v3/rooms/{self.room}/join", {})

    def _ephemeral(self) -> list[dict[str, Any]]:
        return [e for t in self.fake.transactions() for e in t.body.get("ephemeral", [])]

    def test_typing_and_receipts(self) -> None:
        """A user typing and a public read receipt become m.typing / m.receipt EDUs; private receipts do not."""
        ch = self.hs.request("PUT", f"/_matrix/client/v3/rooms/{self.room}/typing/{self.alice}",
                             {"typing": True, "timeout": 30000}, access_token=self.token)
        self.assertEqual(ch.code, 200, ch.json_body)
        event_id = self.hs.request("PUT", f"/_matrix/client/v3/rooms/{self.room}/send/m.room.message/e1",
                                   {"msgtype": "m.text", "body": "hi"}, access_token=self.token).json_body["event_id"]
        for receipt_type in ("m.read.private", "m.read"):
            ch = self.hs.request("POST", f"/_matrix/client/v3/rooms/{self.room}/receipt/{receipt_type}/{event_id}",
                                 {}, access_token=self.token)
            self.assertEqual(ch.code, 200, ch.json_body)
        edus = self._ephemeral()
        typing = [e for e in edus if e["type"] == "m.typing"]
        self.assertEqual(typing[0], {"type": "m.typing", "room_id": self.room, "content": {"user_ids": [self.alice]}})
        receipts = [e for e in edus if e["type"] == "m.receipt"]
        self.assertEqual(len(receipts), 1, receipts)
        self.assertEqual(list(receipts[0]["content"][event_id]), ["m.read"])
        self.assertIn(self.alice, receipts[0]["content"][event_id]["m.read"])

    def test_presence_of_namespace_user(self) -> None:
        """A namespace user's presence change reaches the service as m.presence."""
        as_request(self.hs, "POST", "/_matrix/client/v3/register",
                   {"type": "m.login.application_service", "username": "_bridge_p", "inhibit_login": True})
        ch = as_request(self.hs, "PUT", "/_matrix/client/v3/presence/@_bridge_p:test/status",
                        {"presence": "online", "status_msg": "bridged"}, user_id="@_bridge_p:test")
        self.assertEqual(ch.code, 200, ch.json_body)
        presence = [e for e in self._ephemeral() if e["type"] == "m.presence"]
        self.assertEqual(presence[-1]["sender"], "@_bridge_p:test")
        self.assertEqual(presence[-1]["content"]["status_msg"], "bridged")

    def test_private_receipts_only_for_namespace_users(self) -> None:
        """A private read receipt reaches the service only when its user is in the service's namespace."""
        event_id = self.hs.request("PUT", f"/_matrix/client/v3/rooms/{self.room}/send/m.room.message/p1",
                                   {"msgtype": "m.text", "body": "hi"}, access_token=self.token).json_body["event_id"]
        ch = self.hs.request("POST", f"/_matrix/client/v3/rooms/{self.room}/receipt/m.read.private/{event_id}",
                             {}, access_token=self.token)
        self.assertEqual(ch.code, 200, ch.json_body)
        as_request(self.hs, "POST", "/_matrix/client/v3/register",
                   {"type": "m.login.application_service", "username": "_bridge_r", "inhibit_login": True})
        ch = as_request(self.hs, "POST", f"/_matrix/client/v3/rooms/{self.room}/invite",
                        {"user_id": "@_bridge_r:test"})
        self.assertEqual(ch.code, 200, ch.json_body)
        as_request(self.hs, "POST", f"/_matrix/client/v3/rooms/{self.room}/join", {}, user_id="@_bridge_r:test")
        ch = as_request(self.hs, "POST", f"/_matrix/client/v3/rooms/{self.room}/receipt/m.read.private/{event_id}",
                        {}, user_id="@_bridge_r:test")
        self.assertEqual(ch.code, 200, ch.json_body)
        private = [e for e in self._ephemeral() if e["type"] == "m.receipt"
                   and "m.read.private" in e["content"].get(event_id, {})]
        self.assertEqual(len(private), 1, private)
        self.assertEqual(private[0]["room_id"], self.room)
        self.assertEqual(list(private[0]["content"][event_id]["m.read.private"]), ["@_bridge_r:test"])


class ToDeviceTestCase(TestCase):
    """To-device messages for a service's users reach services that opted in (MSC4203)."""

    def setUp(self) -> None:
        self.hs, self.fake = make_homeserver_with_service(
            self,
            registration(**{"org.matrix.msc4203.receive_to_device": True}),
            registration(id="plain", as_token="pa", hs_token="ph", sender_localpart="plainbot",
                         namespaces={"users": [{"regex": "@_bridge_.*:test", "exclusive": False}]}),
        )
        self.alice, self.token = self.hs.create_user("alice")
        ch = as_request(self.hs, "POST", "/_matrix/client/v3/register",
                        {"type": "m.login.application_service", "username": "_bridge_td", "device_id": "BRIDGEDEV"})
        self.assertEqual(ch.code, 200, ch.json_body)

    def _to_device(self) -> list[dict[str, Any]]:
        return [m for t in self.fake.transactions() for m in t.body.get("org.matrix.msc2409.to_device", [])]

    def test_to_device_for_namespace_user(self) -> None:
        """A message to a namespace user's device arrives with to_user_id/to_device_id; others' do not."""
        _, bob_token = self.hs.create_user("bob")
        ch = self.hs.request("PUT", "/_matrix/client/v3/sendToDevice/m.room_key_request/t1", {"messages": {
            "@_bridge_td:test": {"BRIDGEDEV": {"action": "request", "n": 1}},
            "@bob:test": {"*": {"action": "request", "n": 2}},
        }}, access_token=self.token)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.hs.advance(1)
        messages = self._to_device()
        self.assertEqual(messages, [{
            "type": "m.room_key_request", "sender": self.alice, "content": {"action": "request", "n": 1},
            "to_user_id": "@_bridge_td:test", "to_device_id": "BRIDGEDEV",
        }])
        plain = [t for t in self.fake.transactions() if t.token == "ph"]
        self.assertEqual(plain, [], "a service that did not opt in gets no to-device messages")

    def test_to_device_kept_with_pending_transaction(self) -> None:
        """A transaction carrying to-device messages is retried unchanged until acknowledged."""
        self.fake.fail_transactions = 2
        ch = self.hs.request("PUT", "/_matrix/client/v3/sendToDevice/m.custom/t2", {"messages": {
            "@_bridge_td:test": {"BRIDGEDEV": {"x": 1}}}}, access_token=self.token)
        self.assertEqual(ch.code, 200, ch.json_body)
        for _ in range(10):
            self.hs.advance(5)
        bodies = [t.body for t in self.fake.transactions()]
        self.assertEqual(len(bodies), 3)
        self.assertTrue(all(b == bodies[0] for b in bodies), bodies)
        self.assertEqual(bodies[0]["org.matrix.msc2409.to_device"][0]["content"], {"x": 1})
        pending = self.successResultOf(defer.ensureDeferred(
            self.hs.components.appservice.store.get_pending("bridge")))
        self.assertIsNone(pending)

    def test_pending_to_device_round_trips_through_the_store(self) -> None:
        """A pending transaction's to-device messages are stored with it (and old EDU-only rows still read)."""
        store = self.hs.components.appservice.store
        edu = {"type": "m.typing", "room_id": "!r:test", "content": {"user_ids": []}}
        message = {"type": "m.x", "sender": "@a:test", "content": {}, "to_user_id": "@_bridge_td:test",
                   "to_device_id": "D"}
        self.successResultOf(defer.ensureDeferred(store.get_position("rt", 0)))
        created = self.successResultOf(defer.ensureDeferred(store.create_pending("rt", 5, [], [edu], [message])))
        read = self.successResultOf(defer.ensureDeferred(store.get_pending("rt")))
        self.assertEqual(read, created)
        self.assertEqual((read.ephemeral, read.to_device) if read else None, ((edu,), (message,)))
        self.successResultOf(defer.ensureDeferred(store.complete_pending("rt", created)))
        plain = self.successResultOf(defer.ensureDeferred(store.create_pending("rt", 6, ["$e"], [edu])))
        self.assertEqual(self.successResultOf(defer.ensureDeferred(store.get_pending("rt"))), plain)


class NoUrlServiceTestCase(TestCase):
    """A ``url: null`` service only uses the client API: it acts, but nothing is pushed or queried."""

    def test_acts_but_receives_nothing(self) -> None:
        """It registers, masquerades and sends; no transaction or user query is ever attempted."""
        self.hs, self.fake = make_homeserver_with_service(self, registration(url=None))
        self.assertEqual(self.hs.components.appservice.transactions.senders, {})
        ch = as_request(self.hs, "POST", "/_matrix/client/v3/register",
                        {"type": "m.login.application_service", "username": "_bridge_n", "inhibit_login": True})
        self.assertEqual(ch.code, 200, ch.json_body)
        room = as_request(self.hs, "POST", CREATE, {}, user_id="@_bridge_n:test").json_body["room_id"]
        ch = as_request(self.hs, "PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/n1",
                        {"msgtype": "m.text", "body": "hi"}, user_id="@_bridge_n:test")
        self.assertEqual(ch.code, 200, ch.json_body)
        _, token = self.hs.create_user("alice")
        ch = self.hs.request("GET", "/_matrix/client/v3/profile/@_bridge_unknown:test", access_token=token)
        self.assertEqual(ch.code, 404)
        self.hs.advance(10)
        self.assertEqual(self.fake.requests, [])
