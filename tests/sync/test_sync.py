"""/sync through the full stack: initial and incremental syncs, long-polls, limited timelines, state."""

from __future__ import annotations

import urllib.parse

from matrixd.streams.token import RoomStreamToken, StreamToken
from tests.sync.helpers import SyncTestCase, requester


class InitialSyncTests(SyncTestCase):
    def test_initial_sync_shape(self) -> None:
        """An initial sync lists the joined room with its timeline, summary, counts and a parseable next_batch."""
        alice, atok = self.user("alice")
        room = self.create_room(alice, name="Room")
        msg = self.send(alice, room, "hello")
        body = self.sync(atok)
        StreamToken.parse(body["next_batch"])
        joined = body["rooms"]["join"][room]
        self.assertEqual(joined["timeline"]["events"][-1]["event_id"], msg)
        self.assertFalse(joined["timeline"]["limited"])
        self.assertNotIn("room_id", joined["timeline"]["events"][-1])
        self.assertEqual(joined["summary"]["m.joined_member_count"], 1)
        self.assertEqual(joined["summary"]["m.invited_member_count"], 0)
        self.assertNotIn("m.heroes", joined["summary"])  # the room has a name
        self.assertEqual(joined["unread_notifications"], {"notification_count": 0, "highlight_count": 0})
        for key in ("presence", "account_data", "to_device"):
            self.assertIn("events", body[key])
        self.assertEqual(body["device_lists"], {"changed": [], "left": []})
        self.assertEqual(set(body["rooms"]), {"join", "invite", "leave", "knock"})

    def test_state_is_state_at_timeline_start(self) -> None:
        """With a limited timeline the state section holds the state before it, minus timeline events."""
        alice, atok = self.user("alice")
        room = self.create_room(alice, name="Room")
        for i in range(5):
            self.send(alice, room, f"m{i}")
        body = self.sync(atok, filter={"room": {"timeline": {"limit": 3}}})
        joined = body["rooms"]["join"][room]
        self.assertTrue(joined["timeline"]["limited"])
        self.assertEqual(len(joined["timeline"]["events"]), 3)
        state_types = {(e["type"], e["state_key"]) for e in joined["state"]["events"]}
        self.assertIn(("m.room.create", ""), state_types)
        self.assertIn(("m.room.member", alice), state_types)
        self.assertIn(("m.room.name", ""), state_types)
        timeline_ids = {e["event_id"] for e in joined["timeline"]["events"]}
        self.assertFalse(timeline_ids & {e["event_id"] for e in joined["state"]["events"]})

    def test_recent_room_state_fits_in_timeline(self) -> None:
        """A new room whose whole history fits the timeline has an empty state section."""
        alice, atok = self.user("alice")
        room = self.create_room(alice)
        joined = self.sync(atok, filter={"room": {"timeline": {"limit": 50}}})["rooms"]["join"][room]
        self.assertFalse(joined["timeline"]["limited"])
        self.assertEqual(joined["state"]["events"], [])
        self.assertEqual(joined["timeline"]["events"][0]["type"], "m.room.create")

    def test_heroes_for_unnamed_room(self) -> None:
        """An unnamed room's summary lists other members as heroes, never the syncing user."""
        alice, atok = self.user("alice")
        bob, _ = self.user("bob")
        carol, _ = self.user("carol")
        room = self.create_room(alice, preset="public_chat")
        self.join(bob, room)
        self.membership(alice, carol, room, "invite")
        summary = self.sync(atok)["rooms"]["join"][room]["summary"]
        self.assertEqual(summary["m.heroes"], [bob, carol])
        self.assertEqual(summary["m.joined_member_count"], 2)
        self.assertEqual(summary["m.invited_member_count"], 1)

    def test_many_rooms(self) -> None:
        """An initial sync of many rooms returns every room with its latest events."""
        alice, atok = self.user("alice")
        rooms = [self.create_room(alice) for _ in range(30)]
        last = {r: self.send(alice, r, f"in {r}") for r in rooms}
        body = self.sync(atok)
        self.assertEqual(set(body["rooms"]["join"]), set(rooms))
        for r in rooms:
            self.assertEqual(self.timeline_ids(body, r)[-1], last[r])

    def test_bad_since_token(self) -> None:
        """A malformed since token is 400 M_INVALID_PARAM."""
        _, atok = self.user("alice")
        for bad in ("nonsense", "m1_1_2", "s12", "m1_a_0_0_0_0_0_0_0"):
            channel = self.request("GET", self.sync_path(bad), atok)
            self.assertEqual(channel.code, 400, bad)
            self.assertEqual(channel.json_body["errcode"], "M_INVALID_PARAM")

    def test_bad_parameters(self) -> None:
        """timeout, full_state and set_presence are validated."""
        _, atok = self.user("alice")
        for query in ("timeout=abc", "timeout=-1", "full_state=yes", "set_presence=away"):
            channel = self.request("GET", "/sync?" + query, atok)
            self.assertEqual(channel.code, 400, query)

    def test_requires_auth(self) -> None:
        """/sync without an access token is 401."""
        channel = self.hs.request("GET", "/_matrix/client/v3/sync")
        self.assertEqual(channel.code, 401)

    def test_r0_path(self) -> None:
        """/sync is also served under r0."""
        _, atok = self.user("alice")
        channel = self.hs.request("GET", "/_matrix/client/r0/sync", access_token=atok)
        self.assertEqual(channel.code, 200)


class IncrementalSyncTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")
        self.room = self.create_room(self.alice, preset="public_chat", name="Room")
        self.join(self.bob, self.room)

    def test_incremental_returns_only_new_events(self) -> None:
        """An incremental sync carries the events after the token, unlimited, with an empty state."""
        first = self.sync(self.btok)
        e1 = self.send(self.alice, self.room, "one")
        e2 = self.send(self.alice, self.room, "two")
        body = self.sync(self.btok, since=first["next_batch"])
        joined = body["rooms"]["join"][self.room]
        self.assertEqual(self.timeline_ids(body, self.room), [e1, e2])
        self.assertFalse(joined["timeline"]["limited"])
        self.assertEqual(joined["state"]["events"], [])
        again = self.sync(self.btok, since=body["next_batch"])
        self.assertEqual(again["rooms"]["join"], {})

    def test_empty_incremental_keeps_token(self) -> None:
        """With nothing new, an immediate incremental sync returns the same next_batch and no rooms."""
        first = self.sync(self.btok, set_presence="offline")
        body = self.sync(self.btok, since=first["next_batch"], set_presence="offline")
        self.assertEqual(body["rooms"]["join"], {})
        self.assertEqual(body["next_batch"], first["next_batch"])

    def test_long_poll_woken_by_message(self) -> None:
        """A long-polling sync returns as soon as another user sends into a shared room."""
        first = self.sync(self.btok)
        start = self.hs.reactor.seconds()
        channel = self.request("GET", self.sync_path(first["next_batch"], timeout=30000), self.btok,
                               await_result=False)
        self.hs.advance(1)
        self.assertFalse(channel.is_finished())
        event_id = self.send(self.alice, self.room, "wake up")
        channel.await_result()
        self.assertEqual(channel.code, 200)
        self.assertLess(self.hs.reactor.seconds() - start, 5)
        self.assertEqual(self.timeline_ids(channel.json_body, self.room), [event_id])

    def test_long_poll_times_out_with_nothing(self) -> None:
        """A long-poll with nothing new returns empty after its timeout with an unchanged next_batch."""
        first = self.sync(self.btok, set_presence="offline")
        start = self.hs.reactor.seconds()
        channel = self.request(
            "GET", self.sync_path(first["next_batch"], timeout=3000, set_presence="offline"), self.btok,
            await_result=False,
        )
        self.hs.advance(2.5)
        self.assertFalse(channel.is_finished())
        channel.await_result()
        self.assertEqual(channel.code, 200)
        self.assertGreaterEqual(self.hs.reactor.seconds() - start, 3)
        self.assertEqual(channel.json_body["rooms"]["join"], {})
        self.assertEqual(channel.json_body["next_batch"], first["next_batch"])

    def test_long_poll_ignores_unrelated_rooms(self) -> None:
        """Activity in a room the user is not in does not end their long-poll."""
        first = self.sync(self.btok, set_presence="offline")
        other = self.create_room(self.alice)
        channel = self.request(
            "GET", self.sync_path(first["next_batch"], timeout=2000, set_presence="offline"), self.btok,
            await_result=False,
        )
        self.send(self.alice, other, "elsewhere")
        self.hs.advance(1)
        self.assertFalse(channel.is_finished())
        channel.await_result()
        self.assertEqual(channel.json_body["rooms"]["join"], {})

    def test_long_poll_disconnect_cleans_up(self) -> None:
        """A client that goes away mid long-poll leaves no waiter behind."""
        first = self.sync(self.btok)
        notifier = self.core.notifier
        channel = self.request("GET", self.sync_path(first["next_batch"], timeout=30000), self.btok,
                               await_result=False)
        self.hs.advance(0.5)
        self.assertEqual(notifier.waiter_count(), 1)
        channel.disconnect()
        self.assertEqual(notifier.waiter_count(), 0)

    def test_limited_timeline_with_state_delta_and_prev_batch(self) -> None:
        """A gap bigger than the limit gives limited=true, the gap's state changes, and a prev_batch into the gap."""
        sync_filter = {"room": {"timeline": {"limit": 2}}}
        first = self.sync(self.btok, filter=sync_filter)
        gap = [self.send(self.alice, self.room, f"gap {i}") for i in range(3)]
        topic = self.send(self.alice, self.room, event_type="m.room.topic", content={"topic": "new"}, state_key="")
        gap.append(topic)
        gap.append(self.send(self.alice, self.room, "gap end"))
        last = [self.send(self.alice, self.room, f"last {i}") for i in range(2)]
        body = self.sync(self.btok, since=first["next_batch"], filter=sync_filter)
        joined = body["rooms"]["join"][self.room]
        self.assertTrue(joined["timeline"]["limited"])
        self.assertEqual(self.timeline_ids(body, self.room), last)
        self.assertEqual([e["event_id"] for e in joined["state"]["events"]], [topic])

        token = RoomStreamToken.parse(joined["timeline"]["prev_batch"])
        assert token.topological is not None
        older = self.hs.run(self.core.stores.events.get_room_events_topological(
            self.room, (token.topological, token.stream), None, 5, "b"))
        self.assertEqual([e.event_id for e in older], list(reversed(gap)))

        # /messages continues backwards from prev_batch, and closes the gap from `since` to prev_batch.
        query = urllib.parse.urlencode({"from": joined["timeline"]["prev_batch"], "dir": "b", "limit": 5})
        channel = self.request("GET", f"/rooms/{self.room}/messages?{query}", self.btok)
        self.assertEqual(channel.code, 200, channel.json_body)
        self.assertEqual([e["event_id"] for e in channel.json_body["chunk"]], list(reversed(gap)))
        query = urllib.parse.urlencode({"from": first["next_batch"], "to": joined["timeline"]["prev_batch"],
                                        "dir": "f", "limit": 50})
        channel = self.request("GET", f"/rooms/{self.room}/messages?{query}", self.btok)
        self.assertEqual([e["event_id"] for e in channel.json_body["chunk"]], gap)

    def test_prev_batch_of_empty_timeline(self) -> None:
        """A room sent with no timeline events still has a prev_batch /messages accepts."""
        last = self.send(self.alice, self.room, "latest")
        first = self.sync(self.btok, set_presence="offline")
        self.request("PUT", f"/rooms/{self.room}/typing/{self.alice}", self.atok, {"typing": True})
        body = self.sync(self.btok, since=first["next_batch"], set_presence="offline")
        timeline = body["rooms"]["join"][self.room]["timeline"]
        self.assertEqual(timeline["events"], [])
        query = urllib.parse.urlencode({"from": timeline["prev_batch"], "dir": "b", "limit": 1})
        channel = self.request("GET", f"/rooms/{self.room}/messages?{query}", self.btok)
        self.assertEqual(channel.code, 200, channel.json_body)
        self.assertEqual([e["event_id"] for e in channel.json_body["chunk"]], [last])

    def test_newly_joined_room_has_full_state(self) -> None:
        """A room joined since the last sync comes with its full state and summary."""
        carol, ctok = self.user("carol")
        first = self.sync(ctok)
        for i in range(12):
            self.send(self.alice, self.room, f"before {i}")
        self.join(carol, self.room)
        body = self.sync(ctok, since=first["next_batch"])
        joined = body["rooms"]["join"][self.room]
        state_keys = {(e["type"], e["state_key"]) for e in joined["state"]["events"]}
        self.assertIn(("m.room.create", ""), state_keys)
        self.assertIn(("m.room.member", self.bob), state_keys)
        self.assertEqual(joined["summary"]["m.joined_member_count"], 3)
        self.assertTrue(joined["timeline"]["limited"])
        self.assertEqual(joined["timeline"]["events"][-1]["state_key"], carol)

    def test_full_state(self) -> None:
        """full_state=true returns every joined room's state even when nothing changed."""
        first = self.sync(self.btok)
        body = self.sync(self.btok, since=first["next_batch"], full_state=True)
        joined = body["rooms"]["join"][self.room]
        self.assertEqual(joined["timeline"]["events"], [])
        state_keys = {(e["type"], e["state_key"]) for e in joined["state"]["events"]}
        self.assertIn(("m.room.name", ""), state_keys)
        self.assertIn(("m.room.member", self.alice), state_keys)

    def test_prev_content_and_transaction_id(self) -> None:
        """Timeline state events carry prev_content; the sender's own device sees its transaction_id."""
        first = self.sync(self.atok)
        name = self.send(self.alice, self.room, event_type="m.room.name", content={"name": "New"}, state_key="")
        msg = self.send(self.alice, self.room, "mine", txn_id="txn123")
        body = self.sync(self.atok, since=first["next_batch"])
        events = {e["event_id"]: e for e in body["rooms"]["join"][self.room]["timeline"]["events"]}
        self.assertEqual(events[name]["unsigned"]["prev_content"], {"name": "Room"})
        self.assertIn("replaces_state", events[name]["unsigned"])
        self.assertEqual(events[msg]["unsigned"]["transaction_id"], "txn123")
        bob_view = self.sync(self.btok)["rooms"]["join"][self.room]["timeline"]["events"]
        self.assertNotIn("transaction_id", [e for e in bob_view if e["event_id"] == msg][0]["unsigned"])

    def test_redacted_event(self) -> None:
        """A redacted event is sent pruned, with the redaction in unsigned.redacted_because."""
        first = self.sync(self.btok)
        msg = self.send(self.alice, self.room, "oops")
        redaction = self.hs.run(self.core.send.send_event(
            requester(self.alice), self.room,
            "m.room.redaction", {}, redacts=msg))
        body = self.sync(self.btok, since=first["next_batch"])
        events = {e["event_id"]: e for e in body["rooms"]["join"][self.room]["timeline"]["events"]}
        self.assertEqual(events[msg]["content"], {})
        self.assertEqual(events[msg]["unsigned"]["redacted_because"]["event_id"], redaction)

    def test_member_change_sends_summary(self) -> None:
        """An incremental sync sends the summary again when membership changed."""
        first = self.sync(self.atok)
        carol, _ = self.user("carol")
        self.join(carol, self.room)
        body = self.sync(self.atok, since=first["next_batch"])
        self.assertEqual(body["rooms"]["join"][self.room]["summary"]["m.joined_member_count"], 3)

    def test_event_fields_and_federation_format(self) -> None:
        """event_fields trims events; event_format=federation returns PDUs."""
        self.send(self.alice, self.room, "x")
        body = self.sync(self.btok, filter={"event_fields": ["type", "content.body"]})
        last = body["rooms"]["join"][self.room]["timeline"]["events"][-1]
        self.assertEqual(last, {"type": "m.room.message", "content": {"body": "x"}})
        body = self.sync(self.btok, filter={"event_format": "federation"})
        last = body["rooms"]["join"][self.room]["timeline"]["events"][-1]
        self.assertIn("auth_events", last)
        self.assertIn("depth", last)
