"""Typing notifications: PUT /rooms/{roomId}/typing/{userId} and m.typing in /sync."""

from __future__ import annotations

from typing import Any, Optional

from tests.sync.helpers import SyncTestCase


class TypingTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")
        self.room = self.create_room(self.alice, preset="public_chat")
        self.join(self.bob, self.room)

    def put_typing(self, body: Any, user: Optional[str] = None, token: Optional[str] = None,
                   room: Optional[str] = None) -> int:
        channel = self.request("PUT", f"/rooms/{room or self.room}/typing/{user or self.alice}",
                               token or self.atok, body)
        return channel.code

    def typing_in(self, body: dict[str, Any]) -> Optional[list[str]]:
        room = body["rooms"]["join"].get(self.room)
        if room is None:
            return None
        for ev in room["ephemeral"]["events"]:
            if ev["type"] == "m.typing":
                users: list[str] = ev["content"]["user_ids"]
                return users
        return None

    def test_start_and_stop(self) -> None:
        """Starting and stopping typing each reach the other member's sync as the full list."""
        first = self.sync(self.btok, set_presence="offline")
        self.assertIsNone(self.typing_in(first))
        self.assertEqual(self.put_typing({"typing": True, "timeout": 20000}), 200)
        second = self.sync(self.btok, since=first["next_batch"], set_presence="offline")
        self.assertEqual(self.typing_in(second), [self.alice])
        self.assertEqual(self.put_typing({"typing": False}), 200)
        third = self.sync(self.btok, since=second["next_batch"], set_presence="offline")
        self.assertEqual(self.typing_in(third), [])
        fourth = self.sync(self.btok, since=third["next_batch"], set_presence="offline")
        self.assertIsNone(self.typing_in(fourth))

    def test_expiry(self) -> None:
        """Typing expires after its timeout (capped at 30 s) and the empty list is sent."""
        self.assertEqual(self.put_typing({"typing": True, "timeout": 600000}), 200)
        first = self.sync(self.btok, set_presence="offline")
        self.assertEqual(self.typing_in(first), [self.alice])
        self.hs.advance(29)
        self.assertEqual(self.hs.components.sync.typing.get_typing_users(self.room), [self.alice])
        self.hs.advance(2)
        body = self.sync(self.btok, since=first["next_batch"], set_presence="offline")
        self.assertEqual(self.typing_in(body), [])

    def test_renewal_extends(self) -> None:
        """Renewing typing before expiry keeps the user typing past the first timeout."""
        self.put_typing({"typing": True, "timeout": 10000})
        self.hs.advance(8)
        self.put_typing({"typing": True, "timeout": 10000})
        self.hs.advance(8)
        self.assertEqual(self.hs.components.sync.typing.get_typing_users(self.room), [self.alice])
        self.hs.advance(3)
        self.assertEqual(self.hs.components.sync.typing.get_typing_users(self.room), [])

    def test_wakes_long_poll(self) -> None:
        """Typing ends another member's long-poll."""
        first = self.sync(self.btok, set_presence="offline")
        channel = self.request("GET", self.sync_path(first["next_batch"], timeout=20000, set_presence="offline"),
                               self.btok, await_result=False)
        self.hs.advance(1)
        self.assertFalse(channel.is_finished())
        self.put_typing({"typing": True, "timeout": 5000})
        channel.await_result()
        self.assertEqual(self.typing_in(channel.json_body), [self.alice])

    def test_refusals(self) -> None:
        """Typing for someone else, or in a room you are not in, is 403; a bad body is 400."""
        self.assertEqual(self.put_typing({"typing": True}, user=self.bob), 403)
        carol, ctok = self.user("carol")
        self.assertEqual(self.put_typing({"typing": True}, user=carol, token=ctok), 403)
        self.assertEqual(self.put_typing({"typing": "yes"}), 400)
        self.assertEqual(self.put_typing({"typing": True, "timeout": "long"}), 400)
        self.assertEqual(self.put_typing({}), 400)

    def test_positions_monotonic_across_restart(self) -> None:
        """The typing stream starts from the clock, so a restarted server's positions pass earlier ones."""
        handler = self.hs.components.sync.typing
        before = handler.get_current_token()
        self.put_typing({"typing": True})
        self.assertGreater(handler.get_current_token(), before)
        self.hs.advance(1)
        from matrixd.handlers.typing import TypingHandler
        restarted = TypingHandler(clock=self.hs.components.clock, notifier=self.core.notifier,
                                  current_state=self.core.stores.current_state)
        self.assertGreater(restarted.get_current_token(), handler.get_current_token())

    def test_get_updates(self) -> None:
        """get_updates returns each changed room once with its current list."""
        handler = self.hs.components.sync.typing
        start = handler.get_current_token()
        self.put_typing({"typing": True})
        self.put_typing({"typing": True}, user=self.bob, token=self.btok)
        rows = handler.get_updates(start, handler.get_current_token(), 10)
        self.assertEqual([(r.room_id, r.user_ids) for r in rows], [(self.room, (self.alice, self.bob))])
