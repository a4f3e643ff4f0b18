"""Lazy-loading room members in /sync (state filter lazy_load_members / include_redundant_members)."""

from __future__ import annotations

from typing import Any

from tests.sync.helpers import SyncTestCase

LAZY: dict[str, Any] = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 3}}}
LAZY_REDUNDANT: dict[str, Any] = {
    "room": {"state": {"lazy_load_members": True, "include_redundant_members": True}, "timeline": {"limit": 3}}
}


class LazyLoadingTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")
        self.carol, self.ctok = self.user("carol")
        self.dave, self.dtok = self.user("dave")
        self.room = self.create_room(self.alice, preset="public_chat", name="Room")
        for user in (self.bob, self.carol, self.dave):
            self.join(user, self.room)
        for i in range(4):
            self.send(self.carol, self.room, f"carol {i}")

    def members_in_state(self, body: dict[str, Any]) -> set[str]:
        state = body["rooms"]["join"][self.room]["state"]["events"]
        return {e["state_key"] for e in state if e["type"] == "m.room.member"}

    def test_initial_sync_only_senders_and_self(self) -> None:
        """Initial lazy sync: members of timeline senders and the user, other state complete."""
        body = self.sync(self.dtok, filter=LAZY)
        self.assertEqual(self.members_in_state(body), {self.carol, self.dave})
        state_types = {e["type"] for e in body["rooms"]["join"][self.room]["state"]["events"]}
        self.assertIn("m.room.name", state_types)
        self.assertIn("m.room.power_levels", state_types)
        full = self.sync(self.dtok, filter={"room": {"timeline": {"limit": 3}}})
        self.assertEqual(self.members_in_state(full), {self.alice, self.bob, self.carol, self.dave})

    def test_new_sender_member_sent_once(self) -> None:
        """A new sender's member event arrives with their first message, and is not repeated after."""
        first = self.sync(self.dtok, filter=LAZY)
        self.send(self.bob, self.room, "bob speaks")
        second = self.sync(self.dtok, since=first["next_batch"], filter=LAZY)
        self.assertEqual(self.members_in_state(second), {self.bob})
        self.send(self.bob, self.room, "bob again")
        third = self.sync(self.dtok, since=second["next_batch"], filter=LAZY)
        self.assertEqual(self.members_in_state(third), set())

    def test_include_redundant_members(self) -> None:
        """include_redundant_members sends the sender's member event every time."""
        first = self.sync(self.dtok, filter=LAZY_REDUNDANT)
        self.send(self.carol, self.room, "carol again")
        second = self.sync(self.dtok, since=first["next_batch"], filter=LAZY_REDUNDANT)
        self.assertEqual(self.members_in_state(second), {self.carol})

    def test_lost_response_resends_members(self) -> None:
        """Syncing again from an older token (a lost response) resends the member events."""
        first = self.sync(self.dtok, filter=LAZY)
        self.send(self.bob, self.room, "bob speaks")
        second = self.sync(self.dtok, since=first["next_batch"], filter=LAZY)
        self.assertEqual(self.members_in_state(second), {self.bob})
        retry = self.sync(self.dtok, since=first["next_batch"], filter=LAZY)
        self.assertEqual(self.members_in_state(retry), {self.bob})

    def test_limited_sync_includes_gap_membership(self) -> None:
        """A limited lazy sync includes membership changes in the gap, even of users who do not speak."""
        first = self.sync(self.dtok, filter=LAZY)
        erin, _ = self.user("erin")
        self.join(erin, self.room)
        for i in range(5):
            self.send(self.carol, self.room, f"more {i}")
        body = self.sync(self.dtok, since=first["next_batch"], filter=LAZY)
        self.assertTrue(body["rooms"]["join"][self.room]["timeline"]["limited"])
        self.assertIn(erin, self.members_in_state(body))

    def test_heroes_members_included(self) -> None:
        """In an unnamed room the heroes' member events are sent with lazy loading."""
        room = self.create_room(self.alice, preset="public_chat")
        self.join(self.bob, room)
        self.join(self.dave, room)
        for i in range(4):
            self.send(self.dave, room, f"d {i}")
        body = self.sync(self.dtok, filter=LAZY)
        joined = body["rooms"]["join"][room]
        self.assertEqual(joined["summary"]["m.heroes"], [self.alice, self.bob])
        members = {e["state_key"] for e in joined["state"]["events"] if e["type"] == "m.room.member"}
        self.assertEqual(members, {self.alice, self.bob, self.dave})
