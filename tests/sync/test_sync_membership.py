"""/sync sections by membership: invites with stripped state, knocks, leaves, bans, forgotten rooms."""

from __future__ import annotations

from matrixd.events.room_versions import RoomVersions
from tests.sync.helpers import SyncTestCase, requester


class InviteTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")

    def test_invite_with_stripped_state(self) -> None:
        """An invite appears under rooms.invite with stripped state: create, name, join rules, the invite itself."""
        room = self.create_room(self.alice, name="Secret", topic="t")
        first = self.sync(self.btok)
        self.assertEqual(first["rooms"]["invite"], {})
        self.membership(self.alice, self.bob, room, "invite")
        body = self.sync(self.btok, since=first["next_batch"])
        events = body["rooms"]["invite"][room]["invite_state"]["events"]
        for ev in events:
            self.assertEqual(set(ev), {"type", "state_key", "content", "sender"})
        by_type = {(e["type"], e["state_key"]): e for e in events}
        self.assertEqual(by_type[("m.room.name", "")]["content"], {"name": "Secret"})
        self.assertIn(("m.room.create", ""), by_type)
        self.assertIn(("m.room.join_rules", ""), by_type)
        self.assertIn(("m.room.topic", ""), by_type)
        self.assertIn(("m.room.member", self.alice), by_type)
        self.assertEqual(events[-1]["state_key"], self.bob)
        self.assertEqual(events[-1]["content"]["membership"], "invite")
        self.assertEqual(events[-1]["sender"], self.alice)
        self.assertNotIn(room, body["rooms"]["join"])

    def test_invite_in_initial_sync_then_join(self) -> None:
        """An initial sync lists pending invites; after joining, the room moves to rooms.join."""
        room = self.create_room(self.alice)
        self.membership(self.alice, self.bob, room, "invite")
        first = self.sync(self.btok)
        self.assertIn(room, first["rooms"]["invite"])
        self.join(self.bob, room)
        body = self.sync(self.btok, since=first["next_batch"])
        self.assertNotIn(room, body["rooms"]["invite"])
        self.assertIn(room, body["rooms"]["join"])
        again = self.sync(self.btok, since=body["next_batch"])
        self.assertNotIn(room, again["rooms"]["invite"])

    def test_invite_wakes_long_poll(self) -> None:
        """An invite ends the invitee's long-poll (woken by the member event's state key)."""
        room = self.create_room(self.alice)
        first = self.sync(self.btok)
        channel = self.request("GET", self.sync_path(first["next_batch"], timeout=30000), self.btok,
                               await_result=False)
        self.hs.advance(1)
        self.assertFalse(channel.is_finished())
        self.membership(self.alice, self.bob, room, "invite")
        channel.await_result()
        self.assertIn(room, channel.json_body["rooms"]["invite"])

    def test_rejected_invite_shows_only_the_leave(self) -> None:
        """Rejecting an invite puts the room in rooms.leave with just the rejection and no state."""
        room = self.create_room(self.alice, name="Secret")
        self.send(self.alice, room, "private history")
        self.membership(self.alice, self.bob, room, "invite")
        first = self.sync(self.btok)
        self.membership(self.bob, self.bob, room, "leave")
        body = self.sync(self.btok, since=first["next_batch"])
        left = body["rooms"]["leave"][room]
        self.assertEqual(len(left["timeline"]["events"]), 1)
        self.assertEqual(left["timeline"]["events"][0]["content"]["membership"], "leave")
        self.assertEqual(left["state"]["events"], [])


class KnockTests(SyncTestCase):
    def test_knock_with_stripped_state(self) -> None:
        """A knock appears under rooms.knock with stripped state ending in the knock event."""
        alice, _ = self.user("alice")
        bob, btok = self.user("bob")
        room = self.hs.run(self.core.room_creation.create_room(
            requester(alice),
            {"name": "Knockable", "initial_state": [
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]},
            RoomVersions.V10))
        first = self.sync(btok)
        self.membership(bob, bob, room, "knock")
        body = self.sync(btok, since=first["next_batch"])
        events = body["rooms"]["knock"][room]["knock_state"]["events"]
        self.assertEqual(events[-1]["content"]["membership"], "knock")
        self.assertEqual(events[-1]["state_key"], bob)
        self.assertIn(("m.room.name", ""), {(e["type"], e["state_key"]) for e in events})


class LeaveTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")
        self.room = self.create_room(self.alice, preset="public_chat", name="Room")
        self.join(self.bob, self.room)

    def test_leave_shows_timeline_up_to_leave(self) -> None:
        """Leaving puts the room in rooms.leave with the timeline up to the leave and nothing after."""
        first = self.sync(self.btok)
        before = self.send(self.alice, self.room, "before")
        self.membership(self.bob, self.bob, self.room, "leave")
        self.send(self.alice, self.room, "after")
        body = self.sync(self.btok, since=first["next_batch"])
        self.assertNotIn(self.room, body["rooms"]["join"])
        events = body["rooms"]["leave"][self.room]["timeline"]["events"]
        self.assertEqual(events[0]["event_id"], before)
        self.assertEqual(events[-1]["state_key"], self.bob)
        self.assertEqual(events[-1]["content"]["membership"], "leave")
        again = self.sync(self.btok, since=body["next_batch"])
        self.assertEqual(again["rooms"]["leave"], {})

    def test_kick_and_ban_appear_in_leave(self) -> None:
        """Being kicked, then banned, reports the room under rooms.leave each time."""
        first = self.sync(self.btok)
        self.membership(self.alice, self.bob, self.room, "kick")
        body = self.sync(self.btok, since=first["next_batch"])
        self.assertEqual(body["rooms"]["leave"][self.room]["timeline"]["events"][-1]["content"]["membership"],
                         "leave")
        self.membership(self.alice, self.bob, self.room, "ban")
        body = self.sync(self.btok, since=body["next_batch"])
        self.assertEqual(body["rooms"]["leave"][self.room]["timeline"]["events"][-1]["content"]["membership"],
                         "ban")

    def test_include_leave_and_forget(self) -> None:
        """An initial sync lists left rooms only with include_leave, and never forgotten ones."""
        for i in range(12):
            self.send(self.alice, self.room, f"hello {i}")
        self.membership(self.bob, self.bob, self.room, "leave")
        self.assertEqual(self.sync(self.btok)["rooms"]["leave"], {})
        body = self.sync(self.btok, filter={"room": {"include_leave": True}})
        left = body["rooms"]["leave"][self.room]
        self.assertEqual(left["timeline"]["events"][-1]["content"]["membership"], "leave")
        state_keys = {(e["type"], e["state_key"]) for e in left["state"]["events"]}
        self.assertIn(("m.room.name", ""), state_keys)
        self.hs.run(self.core.membership.forget(
            requester(self.bob), self.room))
        body = self.sync(self.btok, filter={"room": {"include_leave": True}})
        self.assertEqual(body["rooms"]["leave"], {})

    def test_room_filter_excludes_rooms(self) -> None:
        """room.not_rooms hides a room from every section."""
        other = self.create_room(self.alice, preset="public_chat")
        self.join(self.bob, other)
        body = self.sync(self.btok, filter={"room": {"not_rooms": [self.room]}})
        self.assertEqual(set(body["rooms"]["join"]), {other})
        body = self.sync(self.btok, filter={"room": {"rooms": [self.room]}})
        self.assertEqual(set(body["rooms"]["join"]), {self.room})
