"""A client told its event is in the room sees it in its next /sync, and so does an invitee.

State and membership events are announced (the notifier moves, /sync's
upper bound with it) only after their push actions are stored, which is
after they are persisted; the replies to createRoom, state sends and
membership changes wait for that announcement.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet import defer

from matrixd.events.event import Event
from tests.sync.helpers import SyncTestCase


class AnnouncedBeforeReplyTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")
        self.gate: "defer.Deferred[None]" = defer.Deferred()
        self.held: list[str] = []
        generator = self.hs.components.push.generator
        real = generator.handle_event

        async def held_evaluation(event: Event) -> Optional[Any]:
            if event.type == "m.room.member" and event.content.get("membership") == "invite":
                self.held.append(event.event_id)
                await self.gate
            return await real(event)

        generator.handle_event = held_evaluation  # type: ignore[method-assign]

    def test_create_room_with_invite_waits_for_announcement(self) -> None:
        ch = self.request("POST", "/createRoom", self.atok, {"invite": [self.bob]}, await_result=False)
        self.hs.advance(0.1)
        self.assertEqual(len(self.held), 1)  # the invite is persisted, its push evaluation held
        self.assertFalse(ch.is_finished())
        self.gate.callback(None)
        ch.await_result()
        self.assertEqual(ch.code, 200, ch.json_body)
        room_id = ch.json_body["room_id"]
        self.assertIn(room_id, self.sync(self.btok).get("rooms", {}).get("invite", {}))

    def test_invite_waits_for_announcement(self) -> None:
        room_id = self.create_room(self.alice)
        since = self.sync(self.btok)["next_batch"]
        ch = self.request("POST", f"/rooms/{room_id}/invite", self.atok, {"user_id": self.bob}, await_result=False)
        self.hs.advance(0.1)
        self.assertFalse(ch.is_finished())
        self.gate.callback(None)
        ch.await_result()
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertIn(room_id, self.sync(self.btok, since=since, timeout=0)["rooms"]["invite"])

    def test_reply_goes_out_if_evaluation_is_stuck(self) -> None:
        """The wait is bounded: a stuck evaluation delays the reply, never hangs it."""
        room_id = self.create_room(self.alice)
        ch = self.request("POST", f"/rooms/{room_id}/invite", self.atok, {"user_id": self.bob}, await_result=False)
        self.hs.advance(1)
        self.assertFalse(ch.is_finished())
        self.hs.advance(10)
        self.assertTrue(ch.is_finished())
        self.assertEqual(ch.code, 200, ch.json_body)
        self.gate.callback(None)
