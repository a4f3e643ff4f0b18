"""History visibility (VisibilityFilter) over real rooms built by the room core."""

from typing import Any, Coroutine, TypeVar

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.events.event import Event
from matrixd.handlers.visibility import VisibilityFilter
from matrixd.storage.state_lookup import StateEntryStore
from matrixd.storage.visibility import VisibilityStore
from matrixd.testing.room_core import make_room_core, requester

T = TypeVar("T")
ALICE, BOB, CAROL = "@alice:test", "@bob:test", "@carol:test"


class VisibilityFilterTests(unittest.TestCase):
    def setUp(self) -> None:
        self.core, self.reactor = make_room_core(self)
        stores = self.core.stores
        db, clock = self.core.db, self.core.clock
        self.filter = VisibilityFilter(
            events=stores.events, state=stores.state, state_entries=StateEntryStore(db, clock),
            visibility_store=VisibilityStore(db, clock),
        )

    def run_(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.successResultOf(defer.ensureDeferred(coro))

    def room(self, visibility: str, preset: str = "public_chat") -> str:
        room_id = self.run_(self.core.room_creation.create_room(requester(ALICE), {"preset": preset}))
        self.state(room_id, "m.room.history_visibility", {"history_visibility": visibility})
        return room_id

    def state(self, room_id: str, event_type: str, content: dict[str, Any], sender: str = ALICE) -> str:
        return self.run_(self.core.send.send_event(requester(sender), room_id, event_type, content, state_key=""))

    def say(self, room_id: str, body: str, sender: str = ALICE) -> str:
        return self.run_(self.core.send.send_event(requester(sender), room_id, "m.room.message",
                                                   {"msgtype": "m.text", "body": body}))

    def member(self, room_id: str, target: str, action: str, sender: str | None = None) -> str:
        return self.run_(self.core.membership.update_membership(requester(sender or target), target, room_id, action))

    def timeline(self, room_id: str) -> list[Event]:
        return self.run_(self.core.stores.events.get_room_events_stream(room_id, None, None, 1000, "f"))

    def visible_bodies(self, user: str, room_id: str, peeking: bool = False) -> list[str]:
        events = self.run_(self.filter.filter_events_for_client(user, self.timeline(room_id), is_peeking=peeking))
        return [e.content["body"] for e in events if e.type == "m.room.message"]

    def visible_ids(self, user: str, room_id: str) -> set[str]:
        return {e.event_id for e in self.run_(self.filter.filter_events_for_client(user, self.timeline(room_id)))}

    def test_joined_hides_history_before_join(self) -> None:
        """With 'joined', events before the user's join are hidden and later ones shown."""
        room = self.room("joined")
        self.say(room, "before")
        join = self.member(room, BOB, "join")
        self.say(room, "after")
        self.assertEqual(self.visible_bodies(BOB, room), ["after"])
        self.assertIn(join, self.visible_ids(BOB, room))
        self.assertEqual(self.visible_bodies(ALICE, room), ["before", "after"])

    def test_shared_shows_history_to_later_joiners(self) -> None:
        """With 'shared', a user who joined later sees events from before the join."""
        room = self.room("shared")
        self.say(room, "before")
        self.member(room, BOB, "join")
        self.say(room, "after")
        self.assertEqual(self.visible_bodies(BOB, room), ["before", "after"])

    def test_shared_hidden_from_never_joined(self) -> None:
        """With 'shared', a user who never joined sees nothing (not even peeking)."""
        room = self.room("shared")
        self.say(room, "hello")
        self.assertEqual(self.visible_bodies(CAROL, room), [])
        self.assertEqual(self.visible_bodies(CAROL, room, peeking=True), [])

    def test_world_readable_visible_to_non_members(self) -> None:
        """'world_readable' events are visible to anyone, peeking included, until the setting changes."""
        room = self.room("world_readable")
        self.say(room, "open")
        self.state(room, "m.room.history_visibility", {"history_visibility": "joined"})
        self.say(room, "closed")
        self.assertEqual(self.visible_bodies(CAROL, room, peeking=True), ["open"])
        # The change itself is visible since the state before it was world_readable.
        visible = self.run_(self.filter.filter_events_for_client(CAROL, self.timeline(room), is_peeking=True))
        self.assertTrue(any(e.type == "m.room.history_visibility" and e.content["history_visibility"] == "joined"
                            for e in visible))

    def test_change_to_world_readable_is_visible(self) -> None:
        """A history_visibility event opening the room is visible to non-members (rule on after-state)."""
        room = self.room("joined")
        self.state(room, "m.room.history_visibility", {"history_visibility": "world_readable"})
        visible = self.run_(self.filter.filter_events_for_client(CAROL, self.timeline(room), is_peeking=True))
        self.assertEqual([e.content.get("history_visibility") for e in visible
                          if e.type == "m.room.history_visibility"], ["world_readable"])

    def test_left_user_sees_up_to_leave(self) -> None:
        """A user who left sees what they could see before leaving, their leave, and nothing after."""
        room = self.room("joined")
        self.member(room, BOB, "join")
        self.say(room, "while joined")
        leave = self.member(room, BOB, "leave")
        self.say(room, "after leaving")
        self.assertEqual(self.visible_bodies(BOB, room), ["while joined"])
        self.assertIn(leave, self.visible_ids(BOB, room))

    def test_shared_left_user_does_not_see_after_leave(self) -> None:
        """With 'shared', events after the user left stay hidden, earlier ones stay visible."""
        room = self.room("shared")
        self.say(room, "early")
        self.member(room, BOB, "join")
        self.member(room, BOB, "leave")
        self.say(room, "late")
        self.assertEqual(self.visible_bodies(BOB, room), ["early"])

    def test_invited_visibility(self) -> None:
        """With 'invited', events from the invite on are visible; before the invite they are not."""
        room = self.room("invited", preset="private_chat")
        self.say(room, "before invite")
        self.member(room, BOB, "invite", sender=ALICE)
        self.say(room, "while invited")
        self.member(room, BOB, "join")
        self.say(room, "joined")
        self.assertEqual(self.visible_bodies(BOB, room), ["while invited", "joined"])

    def test_joined_hides_invite_period(self) -> None:
        """With 'joined', events while merely invited stay hidden."""
        room = self.room("joined", preset="private_chat")
        self.member(room, BOB, "invite", sender=ALICE)
        self.say(room, "while invited")
        self.member(room, BOB, "join")
        self.assertEqual(self.visible_bodies(BOB, room), [])

    def test_own_invite_follows_the_rules(self) -> None:
        """The user's own invite is judged by the membership after it: visible with 'invited', not 'joined'."""
        invited_room = self.room("invited", preset="private_chat")
        invite = self.member(invited_room, BOB, "invite", sender=ALICE)
        self.assertIn(invite, self.visible_ids(BOB, invited_room))
        joined_room = self.room("joined", preset="private_chat")
        invite = self.member(joined_room, BOB, "invite", sender=ALICE)
        self.assertNotIn(invite, self.visible_ids(BOB, joined_room))

    def test_unknown_visibility_is_shared(self) -> None:
        """An unknown history_visibility value behaves as 'shared'."""
        room = self.room("some_future_value")
        self.say(room, "before")
        self.member(room, BOB, "join")
        self.assertEqual(self.visible_bodies(BOB, room), ["before"])

    def test_rejoin_after_leave_with_shared(self) -> None:
        """With 'shared', rejoining makes the gap while away visible again."""
        room = self.room("shared")
        self.member(room, BOB, "join")
        self.member(room, BOB, "leave")
        self.say(room, "gap")
        self.member(room, BOB, "join")
        self.assertEqual(self.visible_bodies(BOB, room), ["gap"])

    def test_batches_across_rooms_keep_order(self) -> None:
        """A batch mixing rooms is filtered per room and keeps the input order."""
        open_room = self.room("world_readable")
        closed = self.room("joined")
        a = self.say(open_room, "a")
        b = self.say(closed, "b")
        c = self.say(open_room, "c")
        events = self.run_(self.core.stores.events.get_events_as_list([c, b, a]))
        out = self.run_(self.filter.filter_events_for_client(CAROL, events))
        self.assertEqual([e.event_id for e in out], [c, a])
