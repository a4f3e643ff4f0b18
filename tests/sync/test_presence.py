"""Presence: the status API, presence in /sync, and the idle/offline timeouts on the fake clock."""

from __future__ import annotations

from typing import Any, Optional

from tests.sync.helpers import SyncTestCase


class PresenceTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")
        self.room = self.create_room(self.alice, preset="public_chat")
        self.join(self.bob, self.room)

    def status(self, user: str, token: str) -> dict[str, Any]:
        channel = self.request("GET", f"/presence/{user}/status", token)
        self.assertEqual(channel.code, 200, channel.json_body)
        body: dict[str, Any] = channel.json_body
        return body

    def put_status(self, body: Any, user: Optional[str] = None, token: Optional[str] = None) -> int:
        return self.request("PUT", f"/presence/{user or self.alice}/status", token or self.atok, body).code

    def presence_of(self, body: dict[str, Any], user: str) -> Optional[dict[str, Any]]:
        for ev in body["presence"]["events"]:
            if ev["sender"] == user:
                content: dict[str, Any] = ev["content"]
                return content
        return None

    def test_set_and_get(self) -> None:
        """PUT status sets presence and status_msg; GET returns them with last_active_ago."""
        self.assertEqual(self.put_status({"presence": "online", "status_msg": "here"}), 200)
        status = self.status(self.alice, self.btok)
        self.assertEqual(status["presence"], "online")
        self.assertEqual(status["status_msg"], "here")
        self.assertTrue(status["currently_active"])
        self.assertEqual(status["last_active_ago"], 0)
        self.assertEqual(self.put_status({"presence": "unavailable"}), 200)
        status = self.status(self.alice, self.atok)
        self.assertEqual(status["presence"], "unavailable")
        self.assertNotIn("status_msg", status)

    def test_refusals(self) -> None:
        """Setting someone else's presence is 403, a bad state 400, and strangers cannot read it."""
        self.assertEqual(self.put_status({"presence": "online"}, user=self.bob), 403)
        self.assertEqual(self.put_status({"presence": "away"}), 400)
        self.assertEqual(self.put_status({"status_msg": "x"}), 400)
        self.assertEqual(self.put_status({"presence": "online", "status_msg": 3}), 400)
        _, ctok = self.user("carol")
        self.assertEqual(self.request("GET", f"/presence/{self.alice}/status", ctok).code, 403)
        self.assertNotIn("status_msg", self.status(self.alice, self.atok))

    def test_sync_marks_online_and_shares_with_room(self) -> None:
        """Syncing makes a user online, and members of shared rooms see it in their sync."""
        self.hs.advance(40)  # everyone goes offline after the room set-up
        self.assertEqual(self.status(self.alice, self.atok)["presence"], "offline")
        first = self.sync(self.btok, set_presence="offline")
        self.sync(self.atok)
        body = self.sync(self.btok, since=first["next_batch"], set_presence="offline")
        self.assertEqual(self.presence_of(body, self.alice)["presence"], "online")  # type: ignore[index]
        self.assertIsNone(self.presence_of(body, self.bob))

    def test_set_presence_unavailable_on_sync(self) -> None:
        """set_presence=unavailable marks the user idle."""
        self.sync(self.atok, set_presence="unavailable")
        self.assertEqual(self.status(self.alice, self.atok)["presence"], "unavailable")

    def test_offline_after_sync_stops(self) -> None:
        """A user who stops syncing goes offline after the sync timeout; the room sees it."""
        self.sync(self.atok)
        first = self.sync(self.btok, set_presence="offline")
        self.hs.advance(25)
        self.assertEqual(self.status(self.alice, self.atok)["presence"], "online")
        self.hs.advance(10)
        self.assertEqual(self.status(self.alice, self.atok)["presence"], "offline")
        body = self.sync(self.btok, since=first["next_batch"], set_presence="offline")
        self.assertEqual(self.presence_of(body, self.alice)["presence"], "offline")  # type: ignore[index]

    def test_idle_while_syncing(self) -> None:
        """A connected user stops being currently active after a minute and is unavailable after 5 minutes idle."""
        presence = self.hs.components.sync.presence
        connection = presence.user_syncing(self.alice, "online")
        self.hs.run(connection.__aenter__())
        self.hs.advance(30)
        self.assertTrue(self.status(self.alice, self.btok)["currently_active"])
        self.hs.advance(40)
        status = self.status(self.alice, self.btok)
        self.assertEqual(status["presence"], "online")
        self.assertFalse(status["currently_active"])
        self.assertGreaterEqual(status["last_active_ago"], 60000)
        self.hs.advance(240)
        self.assertEqual(self.status(self.alice, self.btok)["presence"], "unavailable")
        self.hs.run(connection.__aexit__(None, None, None))
        self.hs.advance(40)
        self.assertEqual(self.status(self.alice, self.btok)["presence"], "offline")

    def test_own_presence_change_wakes_long_poll(self) -> None:
        """A presence change of someone in a shared room ends a long-poll."""
        first = self.sync(self.btok, set_presence="offline")
        channel = self.request("GET", self.sync_path(first["next_batch"], timeout=20000, set_presence="offline"),
                               self.btok, await_result=False)
        self.hs.advance(1)
        self.assertFalse(channel.is_finished())
        self.put_status({"presence": "online", "status_msg": "hi"})
        channel.await_result()
        self.assertEqual(self.presence_of(channel.json_body, self.alice)["status_msg"], "hi")  # type: ignore[index]

    def test_sending_is_activity(self) -> None:
        """Sending a message makes an idle user online and currently active again."""
        self.put_status({"presence": "unavailable"})
        self.send(self.alice, self.room, "I'm back")
        status = self.status(self.alice, self.atok)
        self.assertEqual(status["presence"], "online")
        self.assertTrue(status["currently_active"])

    def test_reload_after_restart(self) -> None:
        """Presence is stored: a new handler reloads users not offline and keeps timing them out."""
        from matrixd.handlers.presence import PresenceHandler
        self.put_status({"presence": "online", "status_msg": "persisted"})
        components = self.hs.components
        components.sync.presence.stop()
        restarted = PresenceHandler(
            clock=components.clock, store=components.sync.stores.presence, notifier=self.core.notifier,
            current_state=self.core.stores.current_state, server_name=self.hs.server_name)
        self.hs.run(restarted.start())
        state = self.hs.run(restarted.get_state(self.alice))
        self.assertEqual((state.state, state.status_msg), ("online", "persisted"))
        self.hs.advance(40)
        self.assertEqual(self.hs.run(restarted.get_state(self.alice)).state, "offline")
        restarted.stop()


class PresenceDisabledTests(SyncTestCase):
    config = {"presence": {"enabled": False}}

    def test_disabled(self) -> None:
        """With presence disabled nothing is tracked: sync has no presence and everyone reads offline."""
        alice, atok = self.user("alice")
        channel = self.request("PUT", f"/presence/{alice}/status", atok, {"presence": "online"})
        self.assertEqual(channel.code, 200)
        body = self.sync(atok)
        self.assertEqual(body["presence"]["events"], [])
        channel = self.request("GET", f"/presence/{alice}/status", atok)
        self.assertEqual(channel.json_body, {"presence": "offline"})
