"""Per-user rate-limit overrides and shadow bans set with the admin API take effect."""

from __future__ import annotations

import os
from typing import Any

from matrixd.testing.homeserver import make_homeserver
from tests.admin.base import ADMIN, V3, AdminTestCase


class RatelimitOverrideTests(AdminTestCase):
    def setUp(self) -> None:
        store = os.path.abspath(self.mktemp())
        self.hs = make_homeserver(self, {"media_store_path": store,
                                         "rc_message": {"per_second": 0.1, "burst_count": 3}})
        self.admin_id, self.admin_tok = self.hs.create_user("admin", "adminpw", admin=True)
        self.user_id, self.user_tok = self.hs.create_user("bob", "bobpw")
        self.room_id = self.create_room(self.user_tok)
        self.n = 0

    def try_send(self) -> int:
        self.n += 1
        ch = self.req("PUT", f"{V3}/rooms/{self.room_id}/send/m.room.message/t{self.n}",
                      {"msgtype": "m.text", "body": "hi"}, self.user_tok)
        return ch.code

    def test_configured_limit_applies_without_override(self) -> None:
        """Without an override the configured rc_message burst is enforced (429 after 3)."""
        self.assertEqual([self.try_send() for _ in range(4)], [200, 200, 200, 429])

    def test_zero_override_lifts_the_limit(self) -> None:
        """messages_per_second 0 and burst_count 0 means no limit; deleting the override restores it."""
        self.admin("POST", f"/v1/users/{self.user_id}/override_ratelimit",
                   {"messages_per_second": 0, "burst_count": 0})
        self.assertEqual({self.try_send() for _ in range(20)}, {200})
        self.admin("DELETE", f"/v1/users/{self.user_id}/override_ratelimit")
        self.assertEqual([self.try_send() for _ in range(4)], [200, 200, 200, 429])

    def test_custom_override(self) -> None:
        """An override's own burst count replaces the configured one for that user only."""
        self.admin("POST", f"/v1/users/{self.user_id}/override_ratelimit",
                   {"messages_per_second": 1, "burst_count": 6})
        self.assertEqual([self.try_send() for _ in range(7)], [200] * 6 + [429])
        self.hs.advance(2)
        self.assertEqual(self.try_send(), 200)

    def test_override_needs_admin(self) -> None:
        """A user cannot lift their own limit."""
        ch = self.req("POST", f"{ADMIN}/v1/users/{self.user_id}/override_ratelimit",
                      {"messages_per_second": 0, "burst_count": 0}, self.user_tok)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (403, "M_FORBIDDEN"))
        self.assertEqual([self.try_send() for _ in range(4)], [200, 200, 200, 429])


class ShadowBanTests(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.carol, self.carol_tok = self.hs.create_user("carol")
        self.room_id = self.create_room(self.admin_tok, preset="public_chat")
        self.assertEqual(self.join(self.user_tok, self.room_id).code, 200)
        self.admin("POST", f"/v1/users/{self.user_id}/shadow_ban", {})

    def timeline_ids(self) -> list[str]:
        ch = self.req("GET", f"{V3}/rooms/{self.room_id}/messages?dir=b&limit=100", None, self.admin_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        return [e["event_id"] for e in ch.json_body["chunk"]]

    def ok(self, method: str, path: str, body: Any) -> Any:
        ch = self.req(method, path, body, self.user_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        return ch.json_body

    def test_messages_and_state_look_sent_but_are_not(self) -> None:
        """Messages and state events answer 200 with an event id that no other member ever sees."""
        before = self.timeline_ids()
        msg = self.ok("PUT", f"{V3}/rooms/{self.room_id}/send/m.room.message/s1", {"msgtype": "m.text", "body": "x"})
        self.assertTrue(msg["event_id"].startswith("$"))
        again = self.ok("PUT", f"{V3}/rooms/{self.room_id}/send/m.room.message/s1",
                        {"msgtype": "m.text", "body": "x"})
        self.assertEqual(again["event_id"], msg["event_id"])  # idempotent like a real send
        self.ok("PUT", f"{V3}/rooms/{self.room_id}/state/m.room.topic/", {"topic": "spam"})
        self.assertEqual(self.timeline_ids(), before)
        ch = self.req("GET", f"{V3}/rooms/{self.room_id}/event/{msg['event_id']}", None, self.admin_tok)
        self.assertEqual(ch.code, 404)

    def test_invites_look_sent_but_are_not(self) -> None:
        """An invite answers 200 but the invitee is never invited."""
        self.ok("POST", f"{V3}/rooms/{self.room_id}/invite", {"user_id": self.carol})
        members = self.admin("GET", f"/v1/rooms/{self.room_id}/members")["members"]
        self.assertNotIn(self.carol, members)
        ch = self.req("GET", f"{V3}/sync", None, self.carol_tok)
        self.assertEqual(ch.json_body.get("rooms", {}).get("invite", {}), {})

    def test_room_creation_with_invites_is_faked(self) -> None:
        """createRoom with invites answers a room id, but no such room exists and nobody is invited."""
        room_id = self.ok("POST", f"{V3}/createRoom", {"invite": [self.carol]})["room_id"]
        self.admin("GET", f"/v1/rooms/{room_id}", code=404)
        ch = self.req("GET", f"{V3}/sync", None, self.carol_tok)
        self.assertEqual(ch.json_body.get("rooms", {}).get("invite", {}), {})

    def test_typing_is_silent(self) -> None:
        """Typing notifications are accepted and shown to nobody."""
        self.ok("PUT", f"{V3}/rooms/{self.room_id}/typing/{self.user_id}", {"typing": True, "timeout": 30000})
        typing = self.hs.components.sync.typing
        self.assertNotIn(self.user_id, typing.get_typing_users(self.room_id))

    def member_event(self) -> Any:
        ch = self.req("GET", f"{V3}/rooms/{self.room_id}/state/m.room.member/{self.user_id}", None, self.admin_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        return ch.json_body

    def test_profile_changes_stay_out_of_rooms(self) -> None:
        """A display name / avatar change updates the user's own profile but no member event in their rooms."""
        before = self.member_event()
        timeline = self.timeline_ids()
        self.ok("PUT", f"{V3}/profile/{self.user_id}/displayname", {"displayname": "Spammy"})
        self.ok("PUT", f"{V3}/profile/{self.user_id}/avatar_url", {"avatar_url": "mxc://test/spam"})
        self.assertEqual(self.ok("GET", f"{V3}/profile/{self.user_id}", None),
                         {"displayname": "Spammy", "avatar_url": "mxc://test/spam"})
        self.assertEqual(self.member_event(), before)
        self.assertEqual(self.timeline_ids(), timeline)
        self.ok("DELETE", f"{V3}/profile/{self.user_id}/avatar_url", None)
        self.assertEqual(self.member_event(), before)
        # An admin changing the user's profile is not shadow-banned: that change reaches the rooms.
        self.admin("PUT", f"/v2/users/{self.user_id}", {"displayname": "Renamed"})
        self.assertEqual(self.member_event().get("displayname"), "Renamed")

    def test_alias_creation_looks_done_but_is_not(self) -> None:
        """PUT /directory/room answers 200 but stores nothing; taken aliases and bad requests still fail alike."""
        self.ok("PUT", f"{V3}/directory/room/%23spam:test", {"room_id": self.room_id})
        ch = self.req("GET", f"{V3}/directory/room/%23spam:test", None, self.carol_tok)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (404, "M_NOT_FOUND"))
        # Others are unaffected: the alias is still free for them.
        ch = self.req("PUT", f"{V3}/directory/room/%23spam:test", {"room_id": self.room_id}, self.admin_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        ch = self.req("PUT", f"{V3}/directory/room/%23spam:test", {"room_id": self.room_id}, self.user_tok)
        self.assertEqual(ch.code, 409, ch.json_body)  # exactly what an unbanned user would get
        ch = self.req("PUT", f"{V3}/directory/room/%23other:elsewhere", {"room_id": self.room_id}, self.user_tok)
        self.assertEqual(ch.code, 400, ch.json_body)
        mine = self.create_room(self.carol_tok)
        ch = self.req("PUT", f"{V3}/directory/room/%23notin:test", {"room_id": mine}, self.user_tok)
        self.assertEqual(ch.code, 403, ch.json_body)  # not joined: the same refusal as for anyone
        self.assertEqual(self.admin("GET", f"/v1/rooms/{self.room_id}")["canonical_alias"], None)

    def public_room_ids(self) -> list[str]:
        ch = self.req("GET", f"{V3}/publicRooms", None, self.carol_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        return [r["room_id"] for r in ch.json_body["chunk"]]

    def test_created_rooms_are_not_published_nor_aliased(self) -> None:
        """A shadow-banned user's public room with an alias exists for them, but is in no directory and its
        alias stays free; publishing a room later is answered as done and changes nothing."""
        room_id = self.ok("POST", f"{V3}/createRoom", {"visibility": "public", "room_alias_name": "squat",
                                                       "name": "Free stuff"})["room_id"]
        self.assertEqual(self.admin("GET", f"/v1/rooms/{room_id}")["name"], "Free stuff")  # the room is real
        self.assertNotIn(room_id, self.public_room_ids())
        ch = self.req("GET", f"{V3}/directory/room/%23squat:test", None, self.carol_tok)
        self.assertEqual(ch.code, 404, ch.json_body)
        self.ok("PUT", f"{V3}/directory/list/room/{room_id}", {"visibility": "public"})
        self.assertNotIn(room_id, self.public_room_ids())
        # Taken aliases are refused exactly as for anyone.
        ch = self.req("POST", f"{V3}/createRoom", {"room_alias_name": "spam"}, self.admin_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        ch = self.req("POST", f"{V3}/createRoom", {"room_alias_name": "spam"}, self.user_tok)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (400, "M_ROOM_IN_USE"))

    def test_third_party_invites_answer_as_for_anyone(self) -> None:
        """A 3pid invite from a shadow-banned user gets exactly the answer an unbanned user gets; nothing is sent."""
        body = {"id_server": "id.example", "id_access_token": "t", "medium": "email", "address": "a@example.org"}
        before = self.timeline_ids()
        banned = self.req("POST", f"{V3}/rooms/{self.room_id}/invite", body, self.user_tok)
        self.assertEqual(self.join(self.carol_tok, self.room_id).code, 200)
        unbanned = self.req("POST", f"{V3}/rooms/{self.room_id}/invite", body, self.carol_tok)
        self.assertEqual((banned.code, banned.json_body), (unbanned.code, unbanned.json_body))
        ids = self.timeline_ids()
        self.assertEqual([e for e in ids if e not in before and e != ids[0]], [])
        state = self.admin("GET", f"/v1/rooms/{self.room_id}/state")["state"]
        self.assertNotIn("m.room.third_party_invite", [e["type"] for e in state])

    def test_unban_restores(self) -> None:
        """Removing the shadow ban makes the user's messages real again."""
        self.admin("DELETE", f"/v1/users/{self.user_id}/shadow_ban")
        event_id = self.ok("PUT", f"{V3}/rooms/{self.room_id}/send/m.room.message/u1",
                           {"msgtype": "m.text", "body": "back"})["event_id"]
        self.assertIn(event_id, self.timeline_ids())

    def test_shadow_ban_needs_admin(self) -> None:
        """A non-admin cannot lift (or set) a shadow ban."""
        ch = self.req("DELETE", f"{ADMIN}/v1/users/{self.user_id}/shadow_ban", None, self.user_tok)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (403, "M_FORBIDDEN"))
