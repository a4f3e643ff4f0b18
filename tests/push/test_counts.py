"""Push actions stored at persistence: /sync unread counts (with threads), receipts, /notifications."""

from __future__ import annotations

from typing import Any

from tests.sync.helpers import SyncTestCase

THREADED = {"room": {"timeline": {"unread_thread_notifications": True}}}


class UnreadCountTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")
        self.carol, self.ctok = self.user("carol")
        self.room = self.create_room(self.alice, preset="public_chat")
        self.join(self.bob, self.room)
        self.join(self.carol, self.room)

    def counts(self, token: str, **params: Any) -> dict[str, Any]:
        room: dict[str, Any] = self.sync(token, **params)["rooms"]["join"][self.room]
        return room

    def receipt(self, token: str, event_id: str, thread_id: str | None = None) -> None:
        body = {} if thread_id is None else {"thread_id": thread_id}
        ch = self.request("POST", f"/rooms/{self.room}/receipt/m.read/{event_id}", token, body)
        self.assertEqual(ch.code, 200, ch.json_body)

    def test_messages_count_until_read(self) -> None:
        """Messages from others count; a mention also highlights; a read receipt clears up to its event."""
        self.send(self.alice, self.room, "one")
        second = self.send(self.alice, self.room, "two")
        self.send(self.alice, self.room, "hey bob", content={
            "msgtype": "m.text", "body": "hey bob", "m.mentions": {"user_ids": [self.bob]}})
        self.assertEqual(self.counts(self.btok)["unread_notifications"],
                         {"notification_count": 3, "highlight_count": 1})
        self.assertEqual(self.counts(self.atok)["unread_notifications"],
                         {"notification_count": 0, "highlight_count": 0})
        self.receipt(self.btok, second)
        self.assertEqual(self.counts(self.btok)["unread_notifications"],
                         {"notification_count": 1, "highlight_count": 1})

    def test_member_grouping_follows_joins_and_leaves(self) -> None:
        """The room's members grouped by ruleset, updated as members join and leave (and one changes
        rules), equal the grouping built afresh; counts follow it."""
        generator = self.hs.components.push.generator
        updates: list[Any] = []
        real_update = generator._updated_plan

        async def recording_update(plan: Any, members: Any) -> Any:
            updates.append(await real_update(plan, members))
            return updates[-1]

        generator._updated_plan = recording_update  # type: ignore[method-assign]
        dave, dtok = self.user("dave")
        self.join(dave, self.room)
        ch = self.request("PUT", "/pushrules/global/override/quiet", self.ctok,
                          {"conditions": [], "actions": []})
        self.assertEqual(ch.code, 200, ch.json_body)
        self.send(self.alice, self.room, "grouped")
        self.membership(self.bob, self.bob, self.room, "leave")
        self.send(self.alice, self.room, "after bob left")
        updated = generator._plans[self.room]
        self.assertGreaterEqual(len(updates), 2)  # dave's join and bob's leave updated the grouping
        self.assertTrue(all(u is not None for u in updates))

        def shape(plan: Any) -> Any:
            return (plan.members, plan.local, {u: id(r) for u, r in plan.rulesets.items()},
                    sorted((id(g.ruleset), sorted(g.users), sorted(g.by_lower.items())) for g in plan.groups))

        generator._plans.clear()
        rebuilt = self.hs.run(generator._room_plan(self.room, updated.members))
        self.assertEqual(shape(updated), shape(rebuilt))
        self.assertNotIn(self.bob, updated.local)
        self.assertEqual(self.counts(dtok)["unread_notifications"]["notification_count"], 2)
        self.assertEqual(self.counts(self.ctok)["unread_notifications"]["notification_count"], 0)

    def test_incremental_sync_updates_counts_with_receipt(self) -> None:
        """An incremental sync after the user's own receipt shows the room with cleared counts."""
        last = self.send(self.alice, self.room, "one")
        since = self.sync(self.btok)["next_batch"]
        self.receipt(self.btok, last)
        body = self.sync(self.btok, since)
        self.assertEqual(body["rooms"]["join"][self.room]["unread_notifications"],
                         {"notification_count": 0, "highlight_count": 0})

    def test_notices_and_own_messages_do_not_count(self) -> None:
        """m.notice is suppressed by default, and a sender's own events never count for them."""
        self.send(self.alice, self.room, "bot", content={"msgtype": "m.notice", "body": "bot"})
        self.send(self.bob, self.room, "mine")
        self.assertEqual(self.counts(self.btok)["unread_notifications"]["notification_count"], 0)

    def test_threads(self) -> None:
        """Threaded counts are apart when the filter asks; threaded receipts clear only their thread."""
        root = self.send(self.alice, self.room, "root")
        reply = {"msgtype": "m.text", "body": "in thread",
                 "m.relates_to": {"rel_type": "m.thread", "event_id": root}}
        self.send(self.alice, self.room, content=reply)
        last_in_thread = self.send(self.alice, self.room, content=reply)
        self.send(self.alice, self.room, "main again")
        plain = self.counts(self.btok)
        self.assertEqual(plain["unread_notifications"]["notification_count"], 4)
        self.assertNotIn("unread_thread_notifications", plain)
        threaded = self.counts(self.btok, filter=THREADED)
        self.assertEqual(threaded["unread_notifications"]["notification_count"], 2)
        self.assertEqual(threaded["unread_thread_notifications"],
                         {root: {"notification_count": 2, "highlight_count": 0}})
        self.receipt(self.btok, last_in_thread, thread_id=root)
        threaded = self.counts(self.btok, filter=THREADED)
        self.assertEqual(threaded["unread_notifications"]["notification_count"], 2)
        self.assertEqual(threaded["unread_thread_notifications"], {})
        # An unthreaded receipt covers every thread up to its event.
        self.receipt(self.btok, root)
        self.assertEqual(self.counts(self.btok, filter=THREADED)["unread_notifications"]["notification_count"], 1)

    def test_one_to_one_uses_member_count(self) -> None:
        """In a two-member room a message notifies with sound (the member count is read at persistence)."""
        dm = self.create_room(self.alice, preset="public_chat")
        self.join(self.bob, dm)
        self.send(self.alice, dm, "psst")
        page = self.request("GET", "/notifications", self.btok).json_body
        self.assertEqual(page["notifications"][0]["actions"], ["notify", {"set_tweak": "sound", "value": "default"}])

    def test_rule_change_applies_to_next_event(self) -> None:
        """A room rule set to dont_notify stops counting at once (compiled rules are invalidated)."""
        self.send(self.alice, self.room, "one")
        ch = self.request("PUT", f"/pushrules/global/room/{self.room}", self.btok, {"actions": ["dont_notify"]})
        self.assertEqual(ch.code, 200)
        self.send(self.alice, self.room, "two")
        self.assertEqual(self.counts(self.btok)["unread_notifications"]["notification_count"], 1)

    def test_invite_notifies_the_invitee(self) -> None:
        """An invite reaches the invitee's notifications though they are not joined."""
        dave, dtok = self.user("dave")
        self.membership(self.alice, dave, self.room, "invite")
        page = self.request("GET", "/notifications", dtok).json_body
        self.assertEqual(len(page["notifications"]), 1)
        self.assertEqual(page["notifications"][0]["event"]["type"], "m.room.member")


class NotificationsEndpointTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")
        self.room = self.create_room(self.alice, preset="public_chat")
        self.join(self.bob, self.room)
        self.join(self.user("carol")[0], self.room)

    def test_paging_and_highlight_filter(self) -> None:
        """Notifications come newest first, page with next_token, and only=highlight keeps mentions."""
        ids = [self.send(self.alice, self.room, f"m{i}") for i in range(5)]
        mention = self.send(self.alice, self.room, content={
            "msgtype": "m.text", "body": "bob!", "m.mentions": {"user_ids": [self.bob]}})
        ids.append(mention)
        page = self.request("GET", "/notifications?limit=4", self.btok).json_body
        got = [n["event"]["event_id"] for n in page["notifications"]]
        self.assertEqual(got, ids[::-1][:4])
        first = page["notifications"][0]
        self.assertEqual(first["room_id"], self.room)
        self.assertFalse(first["read"])
        self.assertIsInstance(first["ts"], int)
        page2 = self.request("GET", f"/notifications?limit=4&from={page['next_token']}", self.btok).json_body
        self.assertEqual([n["event"]["event_id"] for n in page2["notifications"]], ids[::-1][4:])
        self.assertNotIn("next_token", page2)
        hl = self.request("GET", "/notifications?only=highlight", self.btok).json_body
        self.assertEqual([n["event"]["event_id"] for n in hl["notifications"]], [mention])

    def test_read_flag_follows_receipt(self) -> None:
        """read is true for notifications at or before the user's read receipt."""
        first = self.send(self.alice, self.room, "a")
        self.send(self.alice, self.room, "b")
        self.request("POST", f"/rooms/{self.room}/receipt/m.read/{first}", self.btok, {})
        page = self.request("GET", "/notifications", self.btok).json_body
        self.assertEqual([n["read"] for n in page["notifications"]], [False, True])

    def test_bad_from(self) -> None:
        """A from token that is not ours is a 400."""
        ch = self.request("GET", "/notifications?from=abc", self.btok)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (400, "M_INVALID_PARAM"))


class BroadcastRowTests(SyncTestCase):
    """The actions most members share are stored once; these pin who that row counts for."""

    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")
        self.carol, self.ctok = self.user("carol")
        self.room = self.create_room(self.alice, preset="public_chat")
        self.join(self.bob, self.room)
        self.join(self.carol, self.room)

    def unread(self, token: str) -> dict[str, int]:
        body = self.sync(token)
        counts: dict[str, int] = body["rooms"]["join"][self.room]["unread_notifications"]
        return counts

    def test_late_joiner_does_not_count_earlier_events(self) -> None:
        """Events sent before a user joined never count for them."""
        self.send(self.alice, self.room, "before")
        dave, dtok = self.user("dave")
        self.join(dave, self.room)
        self.assertEqual(self.unread(dtok)["notification_count"], 0)
        self.send(self.alice, self.room, "after")
        self.assertEqual(self.unread(dtok)["notification_count"], 1)
        self.assertEqual(len(self.request("GET", "/notifications", dtok).json_body["notifications"]), 1)

    def test_rejoin_skips_the_time_away(self) -> None:
        """Events while a user was away do not count after they rejoin; a profile change keeps the stretch."""
        self.send(self.alice, self.room, "one")
        self.membership(self.bob, self.bob, self.room, "leave")
        self.send(self.alice, self.room, "while away")
        self.join(self.bob, self.room)
        self.assertEqual(self.unread(self.btok)["notification_count"], 0)
        self.send(self.alice, self.room, "back")
        self.send(self.bob, self.room, event_type="m.room.member", state_key=self.bob,
                  content={"membership": "join", "displayname": "Bobby"})
        self.send(self.alice, self.room, "again")
        self.assertEqual(self.unread(self.btok)["notification_count"], 2)

    def test_exceptions_to_the_common_actions(self) -> None:
        """A mentioned user highlights, a user whose rules differ keeps theirs, the sender counts nothing."""
        self.request("PUT", f"/pushrules/global/room/{self.room}", self.ctok, {"actions": ["dont_notify"]})
        self.send(self.alice, self.room, content={
            "msgtype": "m.text", "body": "hi bob", "m.mentions": {"user_ids": [self.bob]}})
        self.send(self.alice, self.room, "plain")
        self.assertEqual(self.unread(self.btok), {"notification_count": 2, "highlight_count": 1})
        self.assertEqual(self.unread(self.ctok), {"notification_count": 0, "highlight_count": 0})
        self.assertEqual(self.unread(self.atok), {"notification_count": 0, "highlight_count": 0})
        self.assertEqual(self.request("GET", "/notifications", self.ctok).json_body["notifications"], [])

    def test_room_mention_needs_notification_power(self) -> None:
        """@room highlights only when the sender's power reaches notifications.room (power levels read on demand)."""
        room_mention = {"msgtype": "m.text", "body": "@room hi", "m.mentions": {"room": True}}
        self.send(self.carol, self.room, content=room_mention)  # carol: level 0 < 50
        self.assertEqual(self.unread(self.btok), {"notification_count": 1, "highlight_count": 0})
        self.send(self.alice, self.room, content=room_mention)  # alice created the room: 100
        self.assertEqual(self.unread(self.btok), {"notification_count": 2, "highlight_count": 1})
        power = self.hs.run(self.core.stores.current_state.get_current_state_event(
            self.room, "m.room.power_levels", ""))
        assert power is not None
        self.send(self.alice, self.room, event_type="m.room.power_levels", state_key="",
                  content={**power.content, "notifications": {"room": 0}})
        self.send(self.carol, self.room, content=room_mention)
        self.assertEqual(self.unread(self.btok), {"notification_count": 3, "highlight_count": 2})

    def test_display_name_rule_checked_per_user(self) -> None:
        """A user-added contains_display_name rule highlights only for the user whose name is in the body."""
        ch = self.request("PUT", "/pushrules/global/override/name", self.btok, {
            "conditions": [{"kind": "contains_display_name"}], "actions": ["notify", {"set_tweak": "highlight"}]})
        self.assertEqual(ch.code, 200)
        self.send(self.alice, self.room, "ask bob about it")
        self.assertEqual(self.unread(self.btok), {"notification_count": 1, "highlight_count": 1})
        self.assertEqual(self.unread(self.ctok), {"notification_count": 1, "highlight_count": 0})

    def test_badge_counts_every_room(self) -> None:
        """The badge is the unread notifying events over all joined rooms, own and broadcast rows alike."""
        other = self.create_room(self.alice, preset="public_chat")
        self.join(self.bob, other)
        self.send(self.alice, self.room, "a")
        self.send(self.alice, other, "b")
        self.send(self.alice, other, content={
            "msgtype": "m.text", "body": "c", "m.mentions": {"user_ids": [self.bob]}})
        badge = self.hs.run(self.hs.components.push.counts.get_badge_count(self.bob))
        self.assertEqual(badge, 3)


def separate_push_txns() -> float:
    """How many transactions of their own push actions have taken (none for messages: they commit with the event)."""
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value("matrixd_db_txn_duration_seconds_count", {"desc": "add_push_actions"})
    return value or 0.0


class ConsistencyTests(SyncTestCase):
    def test_long_poll_woken_by_event_counts_it(self) -> None:
        """The /sync woken by a message already counts it (actions are stored before the announcement)."""
        alice, _ = self.user("alice")
        bob, btok = self.user("bob")
        room = self.create_room(alice, preset="public_chat")
        self.join(bob, room)
        self.join(self.user("carol")[0], room)
        since = self.sync(btok)["next_batch"]
        channel = self.request("GET", self.sync_path(since, timeout=30000), btok, await_result=False)
        self.hs.advance(1)
        event_id = self.send(alice, room, "wake up")
        self.hs.advance(0.1)
        channel.await_result()
        joined = channel.json_body["rooms"]["join"][room]
        self.assertEqual([e["event_id"] for e in joined["timeline"]["events"]], [event_id])
        self.assertEqual(joined["unread_notifications"], {"notification_count": 1, "highlight_count": 0})

    def test_message_actions_written_in_the_event_transaction(self) -> None:
        """A message's push actions commit with the event (no transaction of their own); member events'
        actions are stored after the event, before its announcement."""
        alice, _ = self.user("alice")
        bob, btok = self.user("bob")
        room = self.create_room(alice, preset="public_chat")
        self.join(bob, room)
        before = separate_push_txns()
        self.send(alice, room, "one")
        self.send(alice, room, "two")
        self.assertEqual(separate_push_txns(), before)
        body = self.sync(btok)
        self.assertEqual(body["rooms"]["join"][room]["unread_notifications"],
                         {"notification_count": 2, "highlight_count": 0})
        carol, ctok = self.user("carol")
        self.membership(alice, carol, room, "invite")
        self.assertEqual(separate_push_txns(), before + 1)
        self.assertEqual(self.sync(ctok)["rooms"]["invite"].keys(), {room})

    def test_group_committed_messages_get_their_actions_in_the_same_transaction(self) -> None:
        """Messages queued behind the room lock persist together; each one's push actions commit with them."""
        from twisted.internet import defer

        from matrixd.handlers.events.creation import EventSpec

        alice, _ = self.user("alice")
        bob, btok = self.user("bob")
        room = self.create_room(alice, preset="public_chat")
        self.join(bob, room)
        before = separate_push_txns()
        lock = self.core.creation.room_lock.queue(room)
        self.hs.run(lock.__aenter__())
        queued = [
            defer.ensureDeferred(self.core.creation.send(
                room, EventSpec("m.room.message", alice, {"msgtype": "m.text", "body": f"m{i}"})))
            for i in range(3)
        ]
        self.assertFalse(any(d.called for d in queued))
        self.hs.run(lock.__aexit__(None, None, None))
        self.hs.advance(0.1)
        for d in queued:
            self.successResultOf(d)
        self.assertEqual(separate_push_txns(), before)
        body = self.sync(btok)
        self.assertEqual(body["rooms"]["join"][room]["unread_notifications"],
                         {"notification_count": 3, "highlight_count": 0})
