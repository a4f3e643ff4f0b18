"""Server notices: the system user's per-user notices room and the send_server_notice endpoint."""

from __future__ import annotations

import os

from matrixd.testing.homeserver import make_homeserver
from tests.admin.base import ADMIN, V3, AdminTestCase


class ServerNoticeTests(AdminTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self, {"media_store_path": os.path.abspath(self.mktemp()), "server_notices": {
            "system_mxid_localpart": "notices", "system_mxid_display_name": "Server", "room_name": "Notices"}})
        self.admin_id, self.admin_tok = self.hs.create_user("admin", "adminpw", admin=True)
        self.user_id, self.user_tok = self.hs.create_user("bob", "bobpw")

    def invites(self) -> list[str]:
        rows = self.hs.run(self.hs.components.core.stores.current_state.get_local_memberships(
            self.user_id, ["invite", "join"]))
        return [m.room_id for m in rows]

    def test_notice_room_reused_then_replaced(self) -> None:
        """Notices go to one invited room named by config; after the user leaves, a new room is made."""
        body = self.admin("POST", "/v1/send_server_notice", {"user_id": self.user_id,
                                                             "content": {"msgtype": "m.text", "body": "hi"}})
        self.assertTrue(body["event_id"].startswith("$"))
        rooms = self.invites()
        self.assertEqual(len(rooms), 1)
        self.assertEqual(self.join(self.user_tok, rooms[0]).code, 200)
        self.assertEqual(self.admin("GET", f"/v1/rooms/{rooms[0]}")["name"], "Notices")
        self.admin("POST", "/v1/send_server_notice", {"user_id": self.user_id, "content": {"body": "again"}})
        self.assertEqual(self.invites(), rooms)
        ch = self.req("PUT", f"{V3}/rooms/{rooms[0]}/send/m.room.message/x", {"body": "reply"}, self.user_tok)
        self.assertEqual(ch.code, 403, ch.json_body)
        self.assertEqual(self.req("POST", f"{V3}/rooms/{rooms[0]}/leave", {}, self.user_tok).code, 200)
        self.admin("POST", "/v1/send_server_notice", {"user_id": self.user_id, "content": {"body": "third"}})
        new_rooms = self.invites()
        self.assertEqual(len(new_rooms), 1)
        self.assertNotEqual(new_rooms, rooms)

    def test_bad_requests(self) -> None:
        """Missing content, remote or unknown users are 4xx; non-admins are 403."""
        self.admin("POST", "/v1/send_server_notice", {"user_id": self.user_id}, code=400)
        self.admin("POST", "/v1/send_server_notice", {"user_id": "@x:remote", "content": {}}, code=400)
        self.admin("POST", "/v1/send_server_notice", {"user_id": "@ghost:test", "content": {}}, code=404)
        ch = self.req("POST", f"{ADMIN}/v1/send_server_notice", {"user_id": self.user_id, "content": {}},
                      self.user_tok)
        self.assertEqual(ch.code, 403)


class ServerNoticesDisabledTests(AdminTestCase):
    def test_disabled_without_config(self) -> None:
        """Without a server_notices section, sending a notice is a 400 saying they are disabled."""
        body = self.admin("POST", "/v1/send_server_notice", {"user_id": self.user_id, "content": {"body": "x"}},
                          code=400)
        self.assertIn("not enabled", body["error"])
