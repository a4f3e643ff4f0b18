"""Receipts (public, private, threaded), read markers and m.receipt in /sync."""

from __future__ import annotations

from typing import Any, Optional

from tests.sync.helpers import SyncTestCase


class ReceiptTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")
        self.room = self.create_room(self.alice, preset="public_chat")
        self.join(self.bob, self.room)
        self.e1 = self.send(self.alice, self.room, "one")
        self.e2 = self.send(self.alice, self.room, "two")

    def post(self, receipt_type: str, event_id: str, body: Any = None, token: Optional[str] = None,
             room: Optional[str] = None) -> tuple[int, Any]:
        channel = self.request("POST", f"/rooms/{room or self.room}/receipt/{receipt_type}/{event_id}",
                               token or self.btok, body if body is not None else {})
        return channel.code, channel.json_body

    def receipts_in(self, body: dict[str, Any], thread: Optional[str] = None) -> dict[str, Any]:
        """The m.receipt content of one thread (None: unthreaded), merged over the room's m.receipt events."""
        room = body["rooms"]["join"].get(self.room)
        content: dict[str, Any] = {}
        for ev in (room or {}).get("ephemeral", {}).get("events", []):
            if ev["type"] != "m.receipt":
                continue
            for event_id, by_type in ev["content"].items():
                for receipt_type, by_user in by_type.items():
                    for user, data in by_user.items():
                        if data.get("thread_id") == thread:
                            content.setdefault(event_id, {}).setdefault(receipt_type, {})[user] = data
        return content

    def test_public_receipt_reaches_others(self) -> None:
        """An m.read receipt is in the other member's incremental sync with its ts."""
        first = self.sync(self.atok, set_presence="offline")
        self.assertEqual(self.post("m.read", self.e1)[0], 200)
        body = self.sync(self.atok, since=first["next_batch"], set_presence="offline")
        receipt = self.receipts_in(body)[self.e1]["m.read"][self.bob]
        self.assertIsInstance(receipt["ts"], int)
        self.assertNotIn("thread_id", receipt)
        self.assertIn(self.e1, self.receipts_in(self.sync(self.atok)))

    def test_private_receipt_only_for_sender(self) -> None:
        """m.read.private is shown to its sender only."""
        first_a = self.sync(self.atok, set_presence="offline")
        first_b = self.sync(self.btok, set_presence="offline")
        self.assertEqual(self.post("m.read.private", self.e2)[0], 200)
        mine = self.receipts_in(self.sync(self.btok, since=first_b["next_batch"], set_presence="offline"))
        self.assertIn(self.bob, mine[self.e2]["m.read.private"])
        theirs = self.receipts_in(self.sync(self.atok, since=first_a["next_batch"], set_presence="offline"))
        self.assertEqual(theirs, {})
        self.assertEqual(self.receipts_in(self.sync(self.atok)), {})
        self.assertIn(self.e2, self.receipts_in(self.sync(self.btok)))

    def test_threaded_receipts(self) -> None:
        """Threaded receipts keep their thread_id and live beside the unthreaded one."""
        root = self.e1
        in_thread = self.send(self.alice, self.room, content={
            "msgtype": "m.text", "body": "reply", "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
        self.assertEqual(self.post("m.read", in_thread, {"thread_id": root})[0], 200)
        self.assertEqual(self.post("m.read", self.e2, {"thread_id": "main"})[0], 200)
        self.assertEqual(self.post("m.read", self.e2)[0], 200)
        body = self.sync(self.atok)
        self.assertEqual(self.receipts_in(body, root)[in_thread]["m.read"][self.bob]["thread_id"], root)
        self.assertEqual(self.receipts_in(body, "main")[self.e2]["m.read"][self.bob]["thread_id"], "main")
        self.assertIn(self.bob, self.receipts_in(body)[self.e2]["m.read"])
        receipt_events = [e for e in body["rooms"]["join"][self.room]["ephemeral"]["events"]
                          if e["type"] == "m.receipt"]
        self.assertEqual(len(receipt_events), 3)
        code, body = self.post("m.read", in_thread, {"thread_id": "main"})
        self.assertEqual((code, body["errcode"]), (400, "M_INVALID_PARAM"))
        code, _ = self.post("m.read", self.e2, {"thread_id": root})
        self.assertEqual(code, 400)
        code, _ = self.post("m.read", self.e2, {"thread_id": ""})
        self.assertEqual(code, 400)
        code, _ = self.post("m.read", self.e2, {"thread_id": 5})
        self.assertEqual(code, 400)

    def test_receipt_never_moves_back(self) -> None:
        """A receipt for an earlier event than the current one changes nothing."""
        self.post("m.read", self.e2)
        first = self.sync(self.atok, set_presence="offline")
        self.assertEqual(self.post("m.read", self.e1)[0], 200)
        body = self.sync(self.atok, since=first["next_batch"], set_presence="offline")
        self.assertEqual(self.receipts_in(body), {})
        self.assertIn(self.e2, self.receipts_in(self.sync(self.atok)))

    def test_receipt_wakes_long_poll(self) -> None:
        """A receipt ends another member's long-poll."""
        first = self.sync(self.atok, set_presence="offline")
        channel = self.request("GET", self.sync_path(first["next_batch"], timeout=20000, set_presence="offline"),
                               self.atok, await_result=False)
        self.hs.advance(1)
        self.assertFalse(channel.is_finished())
        self.post("m.read", self.e2)
        channel.await_result()
        self.assertIn(self.e2, self.receipts_in(channel.json_body))

    def test_refusals(self) -> None:
        """Unknown types are 400, events of other rooms 404, rooms you are not in 403."""
        self.assertEqual(self.post("m.unknown", self.e1)[1]["errcode"], "M_INVALID_PARAM")
        self.assertEqual(self.post("m.read", "$nope")[0], 404)
        other = self.create_room(self.alice)
        elsewhere = self.send(self.alice, other, "x")
        self.assertEqual(self.post("m.read", elsewhere)[0], 404)
        self.assertEqual(self.post("m.read", elsewhere, room=other)[0], 403)
        self.assertEqual(self.post("m.fully_read", self.e1, {"thread_id": "main"})[0], 400)

    def test_empty_body_accepted(self) -> None:
        """A receipt POST with no body at all is accepted as unthreaded."""
        channel = self.hs.request("POST", f"/_matrix/client/v3/rooms/{self.room}/receipt/m.read/{self.e1}",
                                  access_token=self.btok)
        self.assertEqual(channel.code, 200)

    def test_fully_read_via_receipt_endpoint(self) -> None:
        """POST /receipt/m.fully_read sets the m.fully_read room account data, not a receipt."""
        self.assertEqual(self.post("m.fully_read", self.e1)[0], 200)
        channel = self.request("GET", f"/user/{self.bob}/rooms/{self.room}/account_data/m.fully_read", self.btok)
        self.assertEqual(channel.json_body, {"event_id": self.e1})
        self.assertEqual(self.receipts_in(self.sync(self.btok)), {})

    def test_read_markers(self) -> None:
        """/read_markers sets the fully read marker and both receipts; bad input changes nothing."""
        channel = self.request("POST", f"/rooms/{self.room}/read_markers", self.btok,
                               {"m.fully_read": self.e1, "m.read": self.e2, "m.read.private": self.e2})
        self.assertEqual(channel.code, 200)
        body = self.sync(self.btok)
        content = self.receipts_in(body)
        self.assertEqual(set(content[self.e2]), {"m.read", "m.read.private"})
        room_data = {e["type"]: e["content"] for e in body["rooms"]["join"][self.room]["account_data"]["events"]}
        self.assertEqual(room_data["m.fully_read"], {"event_id": self.e1})

        bad = self.request("POST", f"/rooms/{self.room}/read_markers", self.btok,
                           {"m.fully_read": self.e2, "m.read": "$missing"})
        self.assertEqual(bad.code, 404)
        channel = self.request("GET", f"/user/{self.bob}/rooms/{self.room}/account_data/m.fully_read", self.btok)
        self.assertEqual(channel.json_body, {"event_id": self.e1})
        bad = self.request("POST", f"/rooms/{self.room}/read_markers", self.btok, {"m.read": 3})
        self.assertEqual(bad.code, 400)

    def test_store_get_updates(self) -> None:
        """The receipts stream pages rows by stream id, private ones included (for replication)."""
        store = self.hs.components.sync.stores.receipts
        start = store.get_current_token()
        self.post("m.read", self.e1)
        self.post("m.read.private", self.e2)
        rows = self.hs.run(store.get_updates(start, store.get_current_token(), 10))
        self.assertEqual([(r.receipt_type, r.event_id) for r in rows],
                         [("m.read", self.e1), ("m.read.private", self.e2)])
        self.assertEqual(len(self.hs.run(store.get_updates(start, store.get_current_token(), 1))), 1)
