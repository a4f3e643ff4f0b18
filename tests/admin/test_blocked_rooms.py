"""Blocked rooms refuse joins, knocks and invites, locally and over federation."""

from __future__ import annotations

import urllib.parse
from typing import Any

from twisted.trial import unittest

from matrixd.events.event import Event
from matrixd.events.hashing import add_content_hash
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
from matrixd.events.signing import sign_event_dict
from tests.admin.base import ADMIN, V3, AdminTestCase
from tests.federation.utils import REMOTE, create_room, make_federating_homeserver
from tests.federation_flow.fake_room import FakeRoom

BOB = f"@bob:{REMOTE}"


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class LocalBlockedRoomTests(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room_id = self.create_room(self.admin_tok, preset="public_chat", visibility="public")
        self.admin("PUT", f"/v1/rooms/{self.room_id}/block", {"block": True})

    def assert_forbidden(self, ch: Any) -> None:
        self.assertEqual(ch.code, 403, ch.json_body)
        self.assertEqual(ch.json_body["errcode"], "M_FORBIDDEN")

    def test_join_refused(self) -> None:
        """Joining a blocked room by id (both endpoints) is 403 M_FORBIDDEN; unblocking allows it again."""
        self.assert_forbidden(self.join(self.user_tok, self.room_id))
        self.assert_forbidden(self.req("POST", f"{V3}/join/{q(self.room_id)}", {}, self.user_tok))
        members = self.admin("GET", f"/v1/rooms/{self.room_id}/members")["members"]
        self.assertNotIn(self.user_id, members)
        self.admin("PUT", f"/v1/rooms/{self.room_id}/block", {"block": False})
        self.assertEqual(self.join(self.user_tok, self.room_id).code, 200)

    def test_invite_refused(self) -> None:
        """Inviting into a blocked room is 403, even by a member with the power to invite."""
        ch = self.req("POST", f"{V3}/rooms/{self.room_id}/invite", {"user_id": self.user_id}, self.admin_tok)
        self.assert_forbidden(ch)

    def test_unknown_blocked_room_refused(self) -> None:
        """A blocked room this server does not know is refused before any federation attempt."""
        self.admin("PUT", f"/v1/rooms/{q('!elsewhere:remote.test')}/block", {"block": True})
        self.assert_forbidden(self.req("POST", f"{V3}/join/{q('!elsewhere:remote.test')}", {}, self.user_tok))

    def test_leave_still_allowed(self) -> None:
        """Members of a blocked room can still leave it (blocking only stops new members)."""
        ch = self.req("POST", f"{V3}/rooms/{self.room_id}/leave", {}, self.admin_tok)
        self.assertEqual(ch.code, 200, ch.json_body)

    def test_block_needs_admin(self) -> None:
        """A non-admin can neither block nor unblock a room."""
        ch = self.req("PUT", f"{ADMIN}/v1/rooms/{self.room_id}/block", {"block": False}, self.user_tok)
        self.assert_forbidden(ch)
        self.assert_forbidden(self.join(self.user_tok, self.room_id))


class FederationBlockedRoomTests(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(self)
        self.alice, _ = self.hs.create_user("alice")
        self.room_id = create_room(self.hs, self.alice, {"preset": "public_chat", "room_version": "10"})
        self.hs.run(self.hs.components.admin.store.block_room(self.room_id, self.alice))

    def test_make_join_refused(self) -> None:
        """make_join (and make_knock) for a blocked room is 403 M_FORBIDDEN."""
        for kind in ("join", "knock"):
            ch = self.remote.request(
                self.hs, "GET", f"/_matrix/federation/v1/make_{kind}/{q(self.room_id)}/{q(BOB)}?ver=10")
            self.assertEqual(ch.code, 403, ch.result_body)
            self.assertEqual(ch.json_body["errcode"], "M_FORBIDDEN")

    def test_send_join_refused(self) -> None:
        """A join template fetched before the block cannot be sent after it."""
        self.hs.run(self.hs.components.admin.store.unblock_room(self.room_id))
        ch = self.remote.request(
            self.hs, "GET", f"/_matrix/federation/v1/make_join/{q(self.room_id)}/{q(BOB)}?ver=10")
        self.assertEqual(ch.code, 200, ch.result_body)
        rv = KNOWN_ROOM_VERSIONS["10"]
        pdu = dict(ch.json_body["event"])
        pdu["origin_server_ts"] = 2_000_000
        event = Event(sign_event_dict(rv, add_content_hash(pdu), REMOTE, self.remote.signing_key), rv)
        self.hs.run(self.hs.components.admin.store.block_room(self.room_id, self.alice))
        ch = self.remote.request(self.hs, "PUT",
                                 f"/_matrix/federation/v2/send_join/{q(self.room_id)}/{q(event.event_id)}",
                                 event.get_pdu_json())
        self.assertEqual(ch.code, 403, ch.result_body)
        membership = self.hs.run(self.hs.components.core.stores.current_state.get_membership(self.room_id, BOB))
        self.assertIsNone(membership)

    def test_inbound_invite_refused(self) -> None:
        """An invite of a local user into a blocked (remote) room is refused with 403."""
        room = FakeRoom(self.remote, KNOWN_ROOM_VERSIONS["10"], BOB)
        self.hs.run(self.hs.components.admin.store.block_room(room.room_id, self.alice))
        invite = room.add("m.room.member", BOB, {"membership": "invite"}, self.alice)
        ch = self.remote.request(self.hs, "PUT",
                                 f"/_matrix/federation/v2/invite/{q(room.room_id)}/{q(invite.event_id)}",
                                 {"event": invite.get_pdu_json(), "room_version": "10", "invite_room_state": []})
        self.assertEqual(ch.code, 403, ch.result_body)
        self.assertEqual(ch.json_body["errcode"], "M_FORBIDDEN")
