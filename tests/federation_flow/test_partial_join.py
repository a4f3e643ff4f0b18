"""Joining a remote room with partial state (send_join omit_members), and the background resync to full state."""

from __future__ import annotations

import urllib.parse
from typing import Any, Callable

from twisted.internet import defer

from matrixd.events.event import JsonDict
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
from matrixd.federation.inbound import events as inbound_events
from matrixd.federation.membership.partial_state import RETRY_DELAY, PartialStateResync
from tests.federation.utils import REMOTE
from tests.federation_flow.fake_room import FakeRoom, FakeRoomHost
from tests.federation_flow.remote_room_case import CAROL, RemoteRoomTestCase, q
from tests.federation_flow.utils import send_transaction

OTHERS = [f"@m{i}:{REMOTE}" for i in range(6)]


class PartialJoinTestCase(RemoteRoomTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.flow = self.hs.components.federation_flow
        self.addCleanup(self.flow.partial_state.stop)

    def make_room(self, version: str = "10") -> FakeRoom:
        room = FakeRoom(self.remote, KNOWN_ROOM_VERSIONS[version], CAROL)
        for user in OTHERS:
            room.add("m.room.member", user, {"membership": "join"}, user)
        room.omit_members = True
        room.serve(self.host)
        return room

    def members(self, room: FakeRoom) -> list[str]:
        return sorted(self.hs.run(self.st.current_state.get_users_in_room(room.room_id)))

    def partial(self, room: FakeRoom) -> bool:
        return bool(self.hs.run(self.st.partial_state.is_partial(room.room_id)))

    def flush(self, seconds: float = 3.0) -> None:
        for _ in range(int(seconds * 10)):
            self.hs.advance(0.1)

    def long_poll_across_resync(self, since: str, query: str = "") -> Any:
        """A /sync long-poll from ``since`` that is still waiting while the host withholds the state and
        has returned once the resync (then let through) has ended; the finished request."""
        timeout_ms = int((RETRY_DELAY + 60) * 1000)
        poll = self.hs.request("GET", f"/_matrix/client/v3/sync?{query}since={since}&timeout={timeout_ms}",
                               access_token=self.alice_token, await_result=False)
        self.flush(1)
        self.assertFalse(poll.is_finished())
        self.host.serves_state = True
        self.flush(RETRY_DELAY + 2)
        self.assertTrue(poll.is_finished())
        return poll

    def send(self, room: FakeRoom, body: str, txn: str) -> None:
        channel = self.hs.request("PUT", f"/_matrix/client/v3/rooms/{q(room.room_id)}/send/m.room.message/{txn}",
                                  {"msgtype": "m.text", "body": body}, access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)

    def test_partial_join_then_full_state(self) -> None:
        """The join is answered on the partial state; the resync then brings every member in."""
        for version in ("10", "12"):
            room = self.make_room(version)
            channel = self.join(room)
            self.assertEqual(channel.code, 200, channel.result_body)
            self.flush()
            self.assertFalse(self.partial(room))
            self.assertEqual(self.members(room), sorted([self.alice, CAROL, *OTHERS]))
            self.assertEqual(room.state_requests, 1)  # /state alone: its PDUs' ids are the state
            info = self.hs.run(self.st.rooms.get_room(room.room_id))
            assert info is not None
            # The join's own state is the full one.
            join_id = self.hs.run(self.st.current_state.get_membership(room.room_id, self.alice)).event_id
            before = self.hs.run(self.st.state.get_state_ids_for_event(join_id, before=True))
            assert before is not None
            self.assertEqual(dict(before), room.state_before[join_id])
            # A resync that stored the state and then failed would ask again after its retry delay.
            self.flush(2 * RETRY_DELAY)
            self.assertEqual(room.state_requests, 1)

    def resync_with_tampered_state(self, tamper: Callable[[JsonDict], None]) -> tuple[FakeRoom, list[str], str]:
        """Join a room of 36 members whose /state answer has the membership of one of them tampered with;
        ``(room, those members, the tampered event's id)`` once resynced."""
        self.patch(inbound_events, "OUTLIER_CHUNK", 7)
        room = self.make_room()
        many = [f"@x{i}:{REMOTE}" for i in range(30)]
        for user in many:
            room.add("m.room.member", user, {"membership": "join", "displayname": user[1:4]}, user)
        tampered_id = room.state[("m.room.member", many[11])]
        answer_state = room._on_state

        async def tampered_state(*args: Any, **kwargs: Any) -> tuple[int, JsonDict]:
            code, body = await answer_state(*args, **kwargs)
            for pdu in body["pdus"]:
                if pdu.get("state_key") == many[11]:
                    tamper(pdu)
            return code, body

        room._on_state = tampered_state  # type: ignore[method-assign]
        self.assertEqual(self.join(room).code, 200)
        self.flush()
        self.assertFalse(self.partial(room))
        self.assertEqual(self.members(room), sorted([self.alice, CAROL, *OTHERS, *many]))
        stored = self.hs.run(self.st.events.get_events([room.state[("m.room.member", u)] for u in many]))
        self.assertEqual(len(stored), len(many))
        self.assertTrue(all(e.internal_metadata.outlier and not e.rejected for e in stored.values()))
        return room, many, tampered_id

    def event_fetches(self) -> list[str]:
        return [uri.split("/v1/event/")[1] for _m, uri in self.network.requests_sent if "/federation/v1/event/" in uri]

    def test_state_pdu_failing_its_signature_check_is_fetched_again(self) -> None:
        """Many missing events, stored in chunks as they are verified; a PDU of /state failing its signature
        check is asked for again with /event, as one missing from the answer is."""

        def forge(pdu: JsonDict) -> None:
            pdu["signatures"] = {REMOTE: {k: "A" * 86 for k in pdu["signatures"][REMOTE]}}

        room, _many, forged_id = self.resync_with_tampered_state(forge)
        self.assertEqual(self.event_fetches(), [q(forged_id)])
        self.assertEqual(room.state_requests, 1)

    def test_unreadable_state_pdu_falls_back_to_state_ids(self) -> None:
        """A PDU of /state too malformed to have an id: the state's ids come from /state_ids, and the event
        from /event."""

        def mangle(pdu: JsonDict) -> None:
            pdu["depth"] = "deep"

        room, _many, mangled_id = self.resync_with_tampered_state(mangle)
        self.assertEqual(self.event_fetches(), [q(mangled_id)])
        self.assertEqual(room.state_requests, 2)  # /state, then /state_ids

    def test_messages_during_and_after_resync(self) -> None:
        """While partial, received messages are accepted and ours reach the room's servers; after, both still flow."""
        self.host.serves_state = False
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        self.flush()
        self.assertTrue(self.partial(room))
        # Only the heroes' memberships (carol) and ours are known yet.
        self.assertEqual(self.members(room), sorted([self.alice, CAROL]))
        msg = room.add("m.room.message", OTHERS[3], {"msgtype": "m.text", "body": "from m3"})
        channel = send_transaction(self.hs, self.remote, [msg.get_pdu_json()])
        self.assertEqual(channel.json_body["pdus"], {msg.event_id: {}})
        stored = self.hs.run(self.st.events.get_event(msg.event_id))
        assert stored is not None
        self.assertIsNone(stored.internal_metadata.rejected_reason)
        self.send(room, "during", "t1")
        self.flush()
        self.assertIn("during", [p["content"].get("body") for p in self.received])
        room.accept(next(p for p in self.received if p["content"].get("body") == "during"))

        self.host.serves_state = True
        self.flush(RETRY_DELAY + 2)
        self.assertFalse(self.partial(room))
        self.assertEqual(self.members(room), sorted([self.alice, CAROL, *OTHERS]))
        # The message received while partial now has the full state before it, and was not rejected.
        before = self.hs.run(self.st.state.get_state_ids_for_event(msg.event_id, before=True))
        assert before is not None
        self.assertIn(("m.room.member", OTHERS[0]), before)
        stored = self.hs.run(self.st.events.get_event(msg.event_id))
        assert stored is not None
        self.assertIsNone(stored.internal_metadata.rejected_reason)
        after = room.add("m.room.message", OTHERS[4], {"msgtype": "m.text", "body": "after"})
        self.assertEqual(send_transaction(self.hs, self.remote, [after.get_pdu_json()]).json_body["pdus"],
                         {after.event_id: {}})
        self.send(room, "after resync", "t2")
        self.flush()
        self.assertIn("after resync", [p["content"].get("body") for p in self.received])
        channel = self.hs.request("GET", f"/_matrix/client/v3/rooms/{q(room.room_id)}/joined_members",
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(sorted(channel.json_body["joined"]), sorted([self.alice, CAROL, *OTHERS]))

    def test_remote_join_during_partial_state(self) -> None:
        """A member joining while we are partial is in the state after the resync too."""
        self.host.serves_state = False
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        newcomer = f"@new:{REMOTE}"
        ev = room.add("m.room.member", newcomer, {"membership": "join"}, newcomer)
        self.assertEqual(send_transaction(self.hs, self.remote, [ev.get_pdu_json()]).json_body["pdus"],
                         {ev.event_id: {}})
        self.assertIn(newcomer, self.members(room))
        self.host.serves_state = True
        self.flush(RETRY_DELAY + 2)
        self.assertFalse(self.partial(room))
        self.assertEqual(self.members(room), sorted([self.alice, CAROL, newcomer, *OTHERS]))

    def test_leave_during_partial_state(self) -> None:
        """A leave while partial goes to the room's servers and ends our membership."""
        self.host.serves_state = False
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        channel = self.hs.request("POST", f"/_matrix/client/v3/rooms/{q(room.room_id)}/leave", {},
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.flush()
        self.assertIn("leave", [p["content"].get("membership") for p in self.received])
        membership = self.hs.run(self.st.current_state.get_membership(room.room_id, self.alice))
        assert membership is not None
        self.assertEqual(membership.membership, "leave")
        self.host.serves_state = True
        self.flush(RETRY_DELAY + 2)
        self.assertFalse(self.partial(room))
        membership = self.hs.run(self.st.current_state.get_membership(room.room_id, self.alice))
        assert membership is not None
        self.assertEqual(membership.membership, "leave")

    def test_resync_resumes_after_restart(self) -> None:
        """A room still marked partial at start-up is resynced by a fresh resync (as after a restart)."""
        self.host.serves_state = False
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        self.flow.partial_state.stop()  # the process "dies" with the room partial
        self.host.serves_state = True
        core = self.hs.components.core
        fresh = PartialStateResync(
            clock=core.clock, server_name=core.server_name, store=self.st.partial_state, fetcher=self.flow.fetcher,
            rooms=self.st.rooms, events=self.st.events, state=self.st.state, state_calc=core.state_calc,
            event_handler=self.flow.event_handler, persister=core.persister, room_lock=core.creation.room_lock,
            forget_state_after=core.creation.forget_state_after,
        )
        self.addCleanup(fresh.stop)
        self.assertTrue(self.partial(room))
        self.hs.run(fresh.resume())
        self.flush()
        self.assertFalse(self.partial(room))
        self.assertEqual(self.members(room), sorted([self.alice, CAROL, *OTHERS]))

    def test_resync_asks_other_servers(self) -> None:
        """When the server we joined through cannot give the state, another of servers_in_room is asked."""
        other_remote_name = "other.example"
        from matrixd.testing.federation import FakeRemoteServer
        other = FakeRemoteServer(self.network, other_remote_name)
        room = self.make_room()
        # A member on the other server, so servers_in_room names it; it serves the room as well.
        room.remote, signer = other, room.remote
        room.add("m.room.member", f"@o:{other_remote_name}", {"membership": "join"}, f"@o:{other_remote_name}")
        room.remote = signer
        FakeRoomHost(other).rooms[room.room_id] = room
        self.host.serves_state = False  # the joined-via server fails /state_ids
        self.assertEqual(self.join(room).code, 200)
        self.flush(120)  # the first server's 503s are retried by the client before the next is asked
        self.assertFalse(self.partial(room))
        self.assertIn(f"@o:{other_remote_name}", self.members(room))

    def test_server_without_omit_members_gives_full_state(self) -> None:
        """A resident server that does not omit members: a full join as before, never marked partial."""
        room = self.make_room()
        room.omit_members = False
        self.assertEqual(self.join(room).code, 200)
        self.assertFalse(self.partial(room))
        self.assertEqual(self.members(room), sorted([self.alice, CAROL, *OTHERS]))
        self.assertEqual(room.state_requests, 0)

    def test_sync_leaves_out_partial_rooms_until_resynced(self) -> None:
        """A non-lazy /sync omits the partial-state room, then shows it as newly joined with every member."""
        self.host.serves_state = False
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        channel = self.hs.request("GET", "/_matrix/client/v3/sync", access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertNotIn(room.room_id, channel.json_body.get("rooms", {}).get("join", {}))
        since = channel.json_body["next_batch"]
        lazy = urllib.parse.quote('{"room":{"state":{"lazy_load_members":true}}}')
        channel = self.hs.request("GET", f"/_matrix/client/v3/sync?filter={lazy}", access_token=self.alice_token)
        self.assertIn(room.room_id, channel.json_body["rooms"]["join"])

        self.host.serves_state = True
        self.flush(RETRY_DELAY + 2)
        self.assertFalse(self.partial(room))
        channel = self.hs.request("GET", f"/_matrix/client/v3/sync?since={since}", access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        joined = channel.json_body["rooms"]["join"][room.room_id]
        events = [*joined["state"]["events"], *joined["timeline"]["events"]]
        members = {e["state_key"] for e in events if e["type"] == "m.room.member"}
        self.assertEqual(members, {self.alice, CAROL, *OTHERS})
        self.assertIn("m.room.create", {e["type"] for e in events})

    def test_messages_received_while_left_out_are_in_the_resynced_timeline(self) -> None:
        """A message that arrived while a non-lazy /sync left the room out, and that the client's token
        has since passed, is in the room's timeline when the room is shown after its resync."""
        self.host.serves_state = False
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        since = self.hs.request("GET", "/_matrix/client/v3/sync", access_token=self.alice_token).json_body[
            "next_batch"]
        msg = room.add("m.room.message", OTHERS[1], {"msgtype": "m.text", "body": "while partial"})
        self.assertEqual(send_transaction(self.hs, self.remote, [msg.get_pdu_json()]).json_body["pdus"],
                         {msg.event_id: {}})
        channel = self.hs.request("GET", f"/_matrix/client/v3/sync?since={since}", access_token=self.alice_token)
        self.assertNotIn(room.room_id, channel.json_body.get("rooms", {}).get("join", {}))
        since = channel.json_body["next_batch"]  # past the message
        self.host.serves_state = True
        self.flush(RETRY_DELAY + 2)
        self.assertFalse(self.partial(room))
        channel = self.hs.request("GET", f"/_matrix/client/v3/sync?since={since}", access_token=self.alice_token)
        joined = channel.json_body["rooms"]["join"][room.room_id]
        self.assertIn(msg.event_id, [e["event_id"] for e in joined["timeline"]["events"]])

    def test_lazy_sync_gets_member_counts_once_resynced(self) -> None:
        """A lazy-loading /sync shows the partial-state room without member counts (they are not known),
        and a long-poll is woken by the resync with the room's real counts."""
        self.host.serves_state = False
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        lazy = urllib.parse.quote('{"room":{"state":{"lazy_load_members":true}}}')
        channel = self.hs.request("GET", f"/_matrix/client/v3/sync?filter={lazy}", access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        summary = channel.json_body["rooms"]["join"][room.room_id].get("summary", {})
        self.assertNotIn("m.joined_member_count", summary)
        poll = self.long_poll_across_resync(channel.json_body["next_batch"], f"filter={lazy}&")
        summary = poll.json_body["rooms"]["join"][room.room_id]["summary"]
        self.assertEqual(summary["m.joined_member_count"], 2 + len(OTHERS))
        self.assertEqual(summary["m.invited_member_count"], 0)
        # Shown once: the next sync has nothing more for the room.
        channel = self.hs.request("GET", f"/_matrix/client/v3/sync?filter={lazy}&since={poll.json_body['next_batch']}",
                                  access_token=self.alice_token)
        self.assertNotIn(room.room_id, channel.json_body.get("rooms", {}).get("join", {}))

    def test_room_is_resynced_when_its_full_state_is_announced(self) -> None:
        """A /sync woken by the resync's current-state change already finds the room resynced: were it still
        marked partial, that sync would leave it out and hand out a token past the resync (the room's
        history before it never shown)."""
        self.host.serves_state = False
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        self.flush()
        self.assertTrue(self.partial(room))
        notifier = self.hs.components.core.notifier
        seen_partial: list[bool] = []

        def on_wake(woken: bool) -> None:
            # Read at once, as a woken /sync does (queued behind whatever the resync still had to write).
            d = defer.ensureDeferred(self.st.partial_state.is_partial(room.room_id))
            d.addCallback(lambda partial: seen_partial.append(bool(partial)))

        notifier.wait_for_keys([room.room_id], notifier.current_seq(), 600).addCallback(on_wake)
        self.host.serves_state = True
        self.flush(RETRY_DELAY + 2)
        self.assertFalse(self.partial(room))
        self.assertEqual(seen_partial, [False])

    def test_long_poll_is_woken_by_the_resync(self) -> None:
        """A /sync long-polling while the room is partial returns when the resync ends, with the room as newly
        joined (the resync changes state without an event: nothing else would wake it, and a timed-out poll
        would move the client's token past the resync)."""
        self.host.serves_state = False
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        self.flush()
        channel = self.hs.request("GET", "/_matrix/client/v3/sync", access_token=self.alice_token)
        poll = self.long_poll_across_resync(channel.json_body["next_batch"])
        self.assertFalse(self.partial(room))
        joined = poll.json_body["rooms"]["join"][room.room_id]
        members = {e["state_key"] for e in [*joined["state"]["events"], *joined["timeline"]["events"]]
                   if e["type"] == "m.room.member"}
        self.assertEqual(members, {self.alice, CAROL, *OTHERS})

    def test_members_wait_for_resync(self) -> None:
        """/joined_members, /members and /state during the resync answer once the full state is known."""
        self.host.serves_state = False
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        base = f"/_matrix/client/v3/rooms/{q(room.room_id)}"
        channels = {name: self.hs.request("GET", f"{base}/{name}", access_token=self.alice_token, await_result=False)
                    for name in ("joined_members", "members", "state", f"state/m.room.member/{q(OTHERS[2])}")}
        # A membership the partial state has (ours) is answered at once.
        channel = self.hs.request("GET", f"{base}/state/m.room.member/{q(self.alice)}", access_token=self.alice_token)
        self.assertEqual(channel.json_body["membership"], "join")
        self.flush(1)
        self.assertFalse(any(c.is_finished() for c in channels.values()))
        self.host.serves_state = True
        self.flush(RETRY_DELAY + 2)
        self.assertTrue(all(c.is_finished() for c in channels.values()))
        everyone = sorted([self.alice, CAROL, *OTHERS])
        self.assertEqual(sorted(channels["joined_members"].json_body["joined"]), everyone)
        self.assertEqual(sorted(e["state_key"] for e in channels["members"].json_body["chunk"]), everyone)
        self.assertEqual(sorted(e["state_key"] for e in channels["state"].json_body if e["type"] == "m.room.member"),
                         everyone)
        self.assertEqual(channels[f"state/m.room.member/{q(OTHERS[2])}"].json_body["membership"], "join")

    def test_kick_of_an_omitted_member_waits_for_resync(self) -> None:
        """Kicking (or banning, inviting) a user whose membership the partial state lacks waits for the
        full state, so it is checked against, and cites, the target's real membership."""
        self.host.serves_state = False
        room = self.make_room()
        room.add("m.room.power_levels", CAROL, {"users": {CAROL: 100, self.alice: 100}}, "")
        self.assertEqual(self.join(room).code, 200)
        base = f"/_matrix/client/v3/rooms/{q(room.room_id)}"
        kick = self.hs.request("POST", f"{base}/kick", {"user_id": OTHERS[2], "reason": "bye"},
                               access_token=self.alice_token, await_result=False)
        self.flush(1)
        self.assertFalse(kick.is_finished())
        self.host.serves_state = True
        self.flush(RETRY_DELAY + 2)
        self.assertTrue(kick.is_finished())
        self.assertEqual(kick.code, 200, kick.result_body)
        sent = [p for p in self.received if p.get("state_key") == OTHERS[2]]
        self.assertEqual([p["content"]["membership"] for p in sent], ["leave"])
        self.assertIn(room.state[("m.room.member", OTHERS[2])], sent[0]["auth_events"])

    def test_kick_during_a_resync_that_never_ends_is_refused(self) -> None:
        """If the full state does not come in time, the kick is refused with 503 and nothing is sent."""
        self.host.serves_state = False
        room = self.make_room()
        room.add("m.room.power_levels", CAROL, {"users": {CAROL: 100, self.alice: 100}}, "")
        self.assertEqual(self.join(room).code, 200)
        kick = self.hs.request("POST", f"/_matrix/client/v3/rooms/{q(room.room_id)}/kick", {"user_id": OTHERS[2]},
                               access_token=self.alice_token, await_result=False)
        self.flush(65)
        self.assertTrue(kick.is_finished())
        self.assertEqual(kick.code, 503, kick.result_body)
        self.assertEqual([p for p in self.received if p.get("state_key") == OTHERS[2]], [])

    def test_local_event_after_resync_builds_on_full_state(self) -> None:
        """Our first event after the resync is built on the full state (not a cached partial one): the room
        keeps every member and the event reaches the room's servers."""
        self.host.serves_state = False
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        self.send(room, "during", "t1")  # its state after (partial) is remembered by the event builder
        self.host.serves_state = True
        self.flush(RETRY_DELAY + 2)
        self.assertFalse(self.partial(room))
        self.received.clear()
        self.send(room, "after", "t2")
        self.flush()
        self.assertEqual(self.members(room), sorted([self.alice, CAROL, *OTHERS]))
        after = [p for p in self.received if p["content"].get("body") == "after"]
        self.assertEqual(len(after), 1)
        event_id = self.hs.run(self.st.events.get_latest_event_ids_in_room(room.room_id))[0]
        state = self.hs.run(self.st.state.get_state_ids_for_event(event_id))
        assert state is not None
        self.assertIn(("m.room.member", OTHERS[5]), state)

    def test_servers_learnt_while_partial_get_our_events(self) -> None:
        """A server whose user joins while we are partial (not in servers_in_room) is sent our events too."""
        from matrixd.testing.federation import FakeRemoteServer
        other = FakeRemoteServer(self.network, "late.example")
        got: list[JsonDict] = []

        async def on_send(origin: str, content: Any, request: Any, txn_id: str) -> tuple[int, JsonDict]:
            got.extend(content.get("pdus", []))
            return 200, {"pdus": {}}

        other.handle("PUT", "/_matrix/federation/v1/send/(?P<txn_id>[^/]*)", on_send)
        self.host.serves_state = False
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        room.remote, signer = other, room.remote
        late_join = room.add("m.room.member", "@late:late.example", {"membership": "join"}, "@late:late.example")
        room.remote = signer
        # The newcomer's server sends its join to us (it knows we are in the room).
        self.assertEqual(send_transaction(self.hs, other, [late_join.get_pdu_json()]).json_body["pdus"],
                         {late_join.event_id: {}})
        self.assertIn("late.example", self.hs.run(self.st.partial_state.get_servers(room.room_id)))
        self.send(room, "to everyone", "t1")
        self.flush()
        self.assertIn("to everyone", [p["content"].get("body") for p in got])
