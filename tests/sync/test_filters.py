"""Filter upload/download and their use by /sync."""

from __future__ import annotations

from tests.sync.helpers import SyncTestCase


class FilterApiTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")

    def upload(self, definition: object, user: str = "", token: str = "") -> tuple[int, dict]:  # type: ignore[type-arg]
        channel = self.request("POST", f"/user/{user or self.alice}/filter", token or self.atok, definition)
        return channel.code, channel.json_body

    def test_upload_and_download(self) -> None:
        """A filter uploads to a string id and downloads unchanged."""
        definition = {"room": {"timeline": {"limit": 5, "types": ["m.room.message"]}}, "presence": {"not_types": ["*"]}}
        code, body = self.upload(definition)
        self.assertEqual(code, 200)
        self.assertIsInstance(body["filter_id"], str)
        channel = self.request("GET", f"/user/{self.alice}/filter/{body['filter_id']}", self.atok)
        self.assertEqual(channel.code, 200)
        self.assertEqual(channel.json_body, definition)

    def test_same_definition_same_id(self) -> None:
        """Uploading an identical filter returns the existing id; a different one a new id."""
        _, a = self.upload({"room": {"timeline": {"limit": 1}}})
        _, b = self.upload({"room": {"timeline": {"limit": 1}}})
        _, c = self.upload({"room": {"timeline": {"limit": 2}}})
        self.assertEqual(a["filter_id"], b["filter_id"])
        self.assertNotEqual(a["filter_id"], c["filter_id"])

    def test_invalid_filter(self) -> None:
        """A malformed filter is 400 M_BAD_JSON; a non-object body M_BAD_JSON / M_NOT_JSON."""
        code, body = self.upload({"room": {"timeline": {"limit": "ten"}}})
        self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"))
        code, body = self.upload([1, 2])
        self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"))

    def test_only_for_yourself(self) -> None:
        """Uploading or reading another user's filters is 403."""
        code, body = self.upload({}, user=self.bob)
        self.assertEqual((code, body["errcode"]), (403, "M_FORBIDDEN"))
        _, mine = self.upload({})
        channel = self.request("GET", f"/user/{self.alice}/filter/{mine['filter_id']}", self.btok)
        self.assertEqual(channel.code, 403)

    def test_unknown_filter(self) -> None:
        """Unknown or malformed filter ids are 404 M_NOT_FOUND."""
        for fid in ("7", "abc", "99999999999999999999999"):
            channel = self.request("GET", f"/user/{self.alice}/filter/{fid}", self.atok)
            self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"), fid)

    def test_sync_with_stored_and_inline_filter(self) -> None:
        """/sync applies a stored filter by id and an inline JSON filter alike."""
        room = self.create_room(self.alice)
        self.send(self.alice, room, "a message")
        definition = {"room": {"timeline": {"types": ["m.room.message"]}}}
        _, stored = self.upload(definition)
        for value in (stored["filter_id"], definition):
            body = self.sync(self.atok, filter=value)
            types = {e["type"] for e in body["rooms"]["join"][room]["timeline"]["events"]}
            self.assertEqual(types, {"m.room.message"})

    def test_sync_with_bad_filter(self) -> None:
        """/sync with an unknown filter id is 404, with junk 400."""
        channel = self.request("GET", "/sync?filter=12345", self.atok)
        self.assertEqual(channel.code, 404)
        channel = self.request("GET", "/sync?filter=junk", self.atok)
        self.assertEqual((channel.code, channel.json_body["errcode"]), (400, "M_INVALID_PARAM"))
        channel = self.request("GET", "/sync?filter=%7Bnot-json", self.atok)
        self.assertEqual((channel.code, channel.json_body["errcode"]), (400, "M_NOT_JSON"))

    def test_filtered_timeline_refills_and_sends_hidden_state(self) -> None:
        """A type filter still returns `limit` matching events; state it hides from the timeline ends up in state."""
        room = self.create_room(self.alice, name="n")
        first = self.sync(self.atok, set_presence="offline")
        msgs = []
        for i in range(4):
            msgs.append(self.send(self.alice, room, f"m{i}"))
            self.send(self.alice, room, event_type="m.room.topic", content={"topic": f"t{i}"}, state_key="")
        sync_filter = {"room": {"timeline": {"limit": 3, "types": ["m.room.message"]}}}
        body = self.sync(self.atok, since=first["next_batch"], filter=sync_filter, set_presence="offline")
        joined = body["rooms"]["join"][room]
        self.assertEqual(self.timeline_ids(body, room), msgs[1:])
        self.assertEqual([e["content"]["topic"] for e in joined["state"]["events"]], ["t3"])

    def test_account_data_and_presence_filters(self) -> None:
        """Global account_data and presence filters drop what they exclude."""
        self.request("PUT", f"/user/{self.alice}/account_data/org.example.a", self.atok, {"x": 1})
        body = self.sync(self.atok, filter={"account_data": {"types": ["org.example.*"]}, "presence": {"types": []}})
        self.assertEqual([e["type"] for e in body["account_data"]["events"]], ["org.example.a"])
        self.assertEqual(body["presence"]["events"], [])
