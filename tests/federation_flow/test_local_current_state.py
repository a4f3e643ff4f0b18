"""The room's current state after a local event when the room has forked (many forward extremities).

A local event cites at most ``MAX_PREV_EVENTS`` extremities; the ones it does not
cite stay extremities, so the room's state afterwards is the resolution of the
states after all of them (the state a later merge event will see), whether the
event is persisted alone or group-committed.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.trial import unittest

from matrixd.events.event import Event, JsonDict, StateMap
from matrixd.handlers.events.creation import MAX_PREV_EVENTS, EventSpec
from tests.federation.utils import REMOTE, create_room, make_federating_homeserver
from tests.federation_flow.utils import remote_event, send_transaction

BOB = f"@bob:{REMOTE}"
FORK = "org.example.fork"


class LocalEventOnManyExtremitiesTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(self)
        self.alice, _ = self.hs.create_user("alice")
        self.room_id = create_room(self.hs, self.alice, {"preset": "public_chat"})
        self.st = self.hs.components.core.stores
        self.core = self.hs.components.core

    # -- helpers ---------------------------------------------------------------------

    def event(self, sender: str, event_type: str, content: JsonDict, state_key: Optional[str] = None,
              **kwargs: Any) -> Event:
        return remote_event(self.hs, self.remote, self.room_id, sender, event_type, content, state_key, **kwargs)

    def send(self, *events: Event) -> None:
        channel = send_transaction(self.hs, self.remote, [e.get_pdu_json() for e in events])
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(channel.json_body["pdus"], {e.event_id: {} for e in events})

    def local_send(self, sender: str, event_type: str, content: JsonDict, state_key: Optional[str] = None) -> Event:
        persisted = self.hs.run(self.core.creation.send(self.room_id, EventSpec(event_type, sender, content,
                                                                                state_key)))
        event: Event = persisted.event
        return event

    def current(self) -> StateMap:
        state: StateMap = self.hs.run(self.st.current_state.get_current_state_ids(self.room_id))
        return state

    def extremities(self) -> list[str]:
        ids: list[str] = self.hs.run(self.st.events.get_latest_event_ids_in_room(self.room_id))
        return ids

    def assert_current_is_resolution_of_extremities(self) -> None:
        rv = self.hs.run(self.st.rooms.get_room_version(self.room_id))
        at = self.hs.run(self.core.state_calc.state_after_events(self.room_id, rv, self.extremities()))
        self.assertEqual(dict(self.current()), dict(at.state_ids))

    def join_bob_as_admin(self) -> Event:
        self.local_send(self.alice, "m.room.power_levels", {"users": {BOB: 100}}, "")
        join = self.event(BOB, "m.room.member", {"membership": "join"}, BOB)
        self.send(join)
        return join

    # -- tests -----------------------------------------------------------------------

    def test_state_event_keeps_state_of_uncited_extremities(self) -> None:
        """A local state event on a room with more forks than it may cite leaves the room's state the
        resolution of the states after every remaining extremity: the uncited forks' state is kept."""
        join = self.join_bob_as_admin()
        state_at_join = self.current()
        forks = [self.event(BOB, FORK, {"n": i}, str(i), prev_events=[join], state=state_at_join, ts=i)
                 for i in range(MAX_PREV_EVENTS + 2)]
        for fork in forks:
            self.send(fork)
        self.assertEqual(sorted(self.extremities()), sorted(f.event_id for f in forks))
        self.assertEqual({k[1] for k in self.current() if k[0] == FORK}, {str(i) for i in range(len(forks))})

        topic = self.local_send(self.alice, "m.room.topic", {"topic": "forked"}, "")
        self.assertEqual(len(topic.prev_event_ids()), MAX_PREV_EVENTS)
        uncited = set(f.event_id for f in forks) - set(topic.prev_event_ids())
        self.assertEqual(sorted(self.extremities()), sorted(uncited | {topic.event_id}))
        current = self.current()
        self.assertEqual(current[("m.room.topic", "")], topic.event_id)
        self.assertEqual({k[1] for k in current if k[0] == FORK}, {str(i) for i in range(len(forks))})
        self.assert_current_is_resolution_of_extremities()

        # A later local event cites every remaining extremity and keeps the same state.
        merge = self.local_send(self.alice, "m.room.message", {"msgtype": "m.text", "body": "merged"})
        self.assertEqual(self.extremities(), [merge.event_id])
        self.assertEqual(dict(self.current()), dict(current))

    def test_group_committed_message_on_many_extremities_resolves_state(self) -> None:
        """A group-committed message citing the deepest extremities of a forked room makes the room's state
        the resolution of the states after the remaining extremities (its own and an uncited one), as a
        merge event will compute it, even though the message itself changes no state.

        Room v12 (state res v2.1): carol names the room (N1); a remote admin demotes her (P2, after N1) while
        she renames it (N2). With every fork in play neither name survives P2; once the message's branch and
        the uncited branch (after P2) are all that remain, P2 is unconflicted and N1 passes its own auth."""
        carol, _ = self.hs.create_user("carol")
        self.local_send(self.alice, "m.room.power_levels",
                        {"users": {BOB: 100, carol: 50}, "state_default": 50}, "")
        join = self.event(BOB, "m.room.member", {"membership": "join"}, BOB)
        self.send(join)
        self.local_send(carol, "m.room.member", {"membership": "join"}, carol)
        n1 = self.local_send(carol, "m.room.name", {"name": "one"}, "")
        state_at_n1 = self.current()
        pl_content = {"users": {BOB: 100, carol: 0}, "state_default": 50}
        deep = n1.depth + 10
        for i in range(3):  # carol's own branch: messages, then N2 (deep)
            self.local_send(carol, "m.room.message", {"msgtype": "m.text", "body": f"m{i}"})
        n2 = self.local_send(carol, "m.room.name", {"name": "two"}, "")
        demote = self.event(BOB, "m.room.power_levels", pl_content, "", prev_events=[n1], state=state_at_n1,
                            ts=1)
        after_p2 = {**state_at_n1, ("m.room.power_levels", ""): demote.event_id}
        shallow = self.event(BOB, "m.room.message", {"msgtype": "m.text", "body": "shallow"},
                             prev_events=[demote], state=after_p2, ts=2)
        deep_p2 = self.event(BOB, "m.room.message", {"msgtype": "m.text", "body": "deep"},
                             prev_events=[demote], state=after_p2, depth=deep, ts=3)
        fillers = [self.event(BOB, "m.room.message", {"msgtype": "m.text", "body": f"f{i}"},
                              prev_events=[n1], state=state_at_n1, depth=deep, ts=10 + i)
                   for i in range(MAX_PREV_EVENTS - 2)]
        for ev in [demote, shallow, deep_p2, *fillers]:
            self.send(ev)
        self.assertEqual(len(self.extremities()), MAX_PREV_EVENTS + 1)
        self.assertNotIn(("m.room.name", ""), self.current())
        self.assert_current_is_resolution_of_extremities()

        msg = self.local_send(self.alice, "m.room.message", {"msgtype": "m.text", "body": "on ten"})
        self.assertNotIn(shallow.event_id, msg.prev_event_ids())
        self.assertIn(n2.event_id, msg.prev_event_ids())
        self.assertEqual(sorted(self.extremities()), sorted([msg.event_id, shallow.event_id]))
        self.assert_current_is_resolution_of_extremities()
        current = self.current()
        self.assertEqual(current[("m.room.power_levels", "")], demote.event_id)
        self.assertEqual(current.get(("m.room.name", "")), n1.event_id)
