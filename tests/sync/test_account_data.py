"""Account data (global and per room), room tags, and their delivery through /sync."""

from __future__ import annotations

from typing import Any

from tests.sync.helpers import SyncTestCase


class AccountDataTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")
        self.room = self.create_room(self.alice)

    def global_types(self, body: dict[str, Any]) -> dict[str, Any]:
        return {e["type"]: e["content"] for e in body["account_data"]["events"]}

    def room_types(self, body: dict[str, Any]) -> dict[str, Any]:
        room = body["rooms"]["join"].get(self.room, {})
        return {e["type"]: e["content"] for e in room.get("account_data", {}).get("events", [])}

    def test_global_put_get_and_sync(self) -> None:
        """Global account data round-trips and reaches the next incremental sync once."""
        first = self.sync(self.atok, set_presence="offline")
        channel = self.request("PUT", f"/user/{self.alice}/account_data/org.example.cfg", self.atok, {"a": 1})
        self.assertEqual((channel.code, channel.json_body), (200, {}))
        channel = self.request("GET", f"/user/{self.alice}/account_data/org.example.cfg", self.atok)
        self.assertEqual(channel.json_body, {"a": 1})
        body = self.sync(self.atok, since=first["next_batch"], set_presence="offline")
        self.assertEqual(self.global_types(body), {"org.example.cfg": {"a": 1}})
        again = self.sync(self.atok, since=body["next_batch"], set_presence="offline")
        self.assertEqual(again["account_data"]["events"], [])
        self.assertEqual(self.global_types(self.sync(self.atok))["org.example.cfg"], {"a": 1})

    def test_room_put_get_and_sync(self) -> None:
        """Room account data round-trips and appears in the room's account_data in /sync."""
        first = self.sync(self.atok, set_presence="offline")
        channel = self.request("PUT", f"/user/{self.alice}/rooms/{self.room}/account_data/org.example.r",
                               self.atok, {"b": 2})
        self.assertEqual(channel.code, 200)
        channel = self.request("GET", f"/user/{self.alice}/rooms/{self.room}/account_data/org.example.r", self.atok)
        self.assertEqual(channel.json_body, {"b": 2})
        body = self.sync(self.atok, since=first["next_batch"], set_presence="offline")
        self.assertEqual(self.room_types(body), {"org.example.r": {"b": 2}})
        self.assertEqual(self.room_types(self.sync(self.atok)), {"org.example.r": {"b": 2}})

    def test_wakes_long_poll(self) -> None:
        """Setting account data ends the user's own long-poll."""
        first = self.sync(self.atok, set_presence="offline")
        channel = self.request("GET", self.sync_path(first["next_batch"], timeout=20000, set_presence="offline"),
                               self.atok, await_result=False)
        self.hs.advance(1)
        self.assertFalse(channel.is_finished())
        self.request("PUT", f"/user/{self.alice}/account_data/org.example.x", self.atok, {})
        channel.await_result()
        self.assertIn("org.example.x", self.global_types(channel.json_body))

    def test_refusals(self) -> None:
        """Other users' data is 403; server-managed types 405 M_BAD_JSON; unknown 404; bad room id 400."""
        channel = self.request("PUT", f"/user/{self.bob}/account_data/x", self.atok, {})
        self.assertEqual((channel.code, channel.json_body["errcode"]), (403, "M_FORBIDDEN"))
        channel = self.request("GET", f"/user/{self.bob}/account_data/x", self.atok)
        self.assertEqual(channel.code, 403)
        for data_type in ("m.fully_read", "m.push_rules"):
            channel = self.request("PUT", f"/user/{self.alice}/account_data/{data_type}", self.atok, {})
            self.assertEqual((channel.code, channel.json_body["errcode"]), (405, "M_BAD_JSON"))
            channel = self.request("PUT", f"/user/{self.alice}/rooms/{self.room}/account_data/{data_type}",
                                   self.atok, {})
            self.assertEqual((channel.code, channel.json_body["errcode"]), (405, "M_BAD_JSON"))
        channel = self.request("GET", f"/user/{self.alice}/account_data/org.example.none", self.atok)
        self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"))
        channel = self.request("GET", f"/user/{self.alice}/rooms/not-a-room/account_data/x", self.atok)
        self.assertEqual((channel.code, channel.json_body["errcode"]), (400, "M_INVALID_PARAM"))
        channel = self.request("PUT", f"/user/{self.alice}/account_data/x", self.atok, [1])
        self.assertEqual(channel.code, 400)
        channel = self.request("PUT", f"/user/{self.alice}/account_data/", self.atok, {})
        self.assertEqual((channel.code, channel.json_body["errcode"]), (400, "M_INVALID_PARAM"))

    def test_push_rules_readable_as_account_data(self) -> None:
        """m.push_rules can be read through the account data API."""
        channel = self.request("GET", f"/user/{self.alice}/account_data/m.push_rules", self.atok)
        self.assertEqual(channel.code, 200)
        self.assertIn("override", channel.json_body["global"])


class TagTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.room = self.create_room(self.alice)
        self.base = f"/user/{self.alice}/rooms/{self.room}/tags"

    def test_add_list_remove(self) -> None:
        """Tags are added, listed, removed, and delivered as m.tag room account data."""
        self.assertEqual(self.request("GET", self.base, self.atok).json_body, {"tags": {}})
        first = self.sync(self.atok, set_presence="offline")
        self.assertEqual(self.request("PUT", self.base + "/m.favourite", self.atok, {"order": 0.5}).code, 200)
        self.assertEqual(self.request("PUT", self.base + "/u.work", self.atok, {}).code, 200)
        self.assertEqual(self.request("GET", self.base, self.atok).json_body,
                         {"tags": {"m.favourite": {"order": 0.5}, "u.work": {}}})
        body = self.sync(self.atok, since=first["next_batch"], set_presence="offline")
        events = body["rooms"]["join"][self.room]["account_data"]["events"]
        self.assertEqual(events, [{"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.5}, "u.work": {}}}}])
        self.assertEqual(self.request("DELETE", self.base + "/u.work", self.atok).code, 200)
        self.assertEqual(self.request("DELETE", self.base + "/u.never", self.atok).code, 200)
        self.assertEqual(self.request("GET", self.base, self.atok).json_body, {"tags": {"m.favourite": {"order": 0.5}}})

    def test_bad_tags(self) -> None:
        """Overlong tag names and non-numeric orders are refused; other users' tags are 403."""
        channel = self.request("PUT", self.base + "/" + "x" * 256, self.atok, {})
        self.assertEqual(channel.code, 400)
        channel = self.request("PUT", self.base + "/u.a", self.atok, {"order": "first"})
        self.assertEqual(channel.code, 400)
        bob, btok = self.user("bob")
        channel = self.request("GET", self.base, btok)
        self.assertEqual(channel.code, 403)
        self.assertEqual(self.request("GET", self.base, self.atok).json_body, {"tags": {}})

    def test_store_get_updates(self) -> None:
        """The account_data stream pages global and room rows together in stream order."""
        store = self.hs.components.sync.stores.account_data
        start = store.get_current_token()
        self.request("PUT", f"/user/{self.alice}/account_data/a", self.atok, {})
        self.request("PUT", self.base + "/u.x", self.atok, {})
        rows = self.hs.run(store.get_updates(start, store.get_current_token(), 10))
        self.assertEqual([(r.room_id, r.data_type) for r in rows], [(None, "a"), (self.room, "m.tag")])
        self.assertEqual(len(self.hs.run(store.get_updates(start, store.get_current_token(), 1))), 1)
