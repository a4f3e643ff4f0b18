"""Our users' memberships of rooms on other servers: remote joins, messages both ways, invites, knocks, leaves."""

from __future__ import annotations

from typing import Any

from matrixd.events.event import Event, JsonDict
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
from matrixd.events.signing import sign_event_dict
from tests.federation.utils import REMOTE, create_room
from tests.federation_flow.fake_room import FakeRoom
from tests.federation_flow.remote_room_case import CAROL, RemoteRoomTestCase, q
from tests.federation_flow.utils import send_transaction


class RemoteJoinTestCase(RemoteRoomTestCase):
    def make_room(self, version: str = "10", join_rule: str = "public") -> FakeRoom:
        room = FakeRoom(self.remote, KNOWN_ROOM_VERSIONS[version], CAROL, join_rule=join_rule)
        room.serve(self.host)
        return room

    def flush_sender(self) -> None:
        """Let the outbound sender deliver what it has queued."""
        for _ in range(30):
            self.hs.advance(0.1)

    def test_join_remote_room(self) -> None:
        """A local user joins a room held by another server: the room becomes usable here at once."""
        for version in ("1", "10", "12"):
            room = self.make_room(version)
            channel = self.join(room)
            self.assertEqual(channel.code, 200, channel.result_body)
            self.assertEqual(channel.json_body["room_id"], room.room_id)
            info = self.hs.run(self.st.rooms.get_room(room.room_id))
            assert info is not None
            self.assertEqual(info.room_version, version)
            members = self.hs.run(self.st.current_state.get_users_in_room(room.room_id))
            self.assertEqual(sorted(members), sorted([self.alice, CAROL]))
            membership = self.hs.run(self.st.current_state.get_membership(room.room_id, self.alice))
            assert membership is not None
            self.assertEqual(membership.membership, "join")
            self.assertIn(membership.event_id, room.events)

    def test_messages_flow_both_ways(self) -> None:
        """After the join, the remote's messages arrive via /send and ours go out to the remote."""
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        msg = room.add("m.room.message", CAROL, {"msgtype": "m.text", "body": "welcome"})
        channel = send_transaction(self.hs, self.remote, [msg.get_pdu_json()])
        self.assertEqual(channel.json_body["pdus"], {msg.event_id: {}})
        channel = self.hs.request("GET", f"/_matrix/client/v3/rooms/{q(room.room_id)}/messages?dir=b&limit=5",
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(channel.json_body["chunk"][0]["content"]["body"], "welcome")
        channel = self.hs.request("GET", "/_matrix/client/v3/sync", access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        timeline = channel.json_body["rooms"]["join"][room.room_id]["timeline"]["events"]
        self.assertIn("welcome", [e["content"].get("body") for e in timeline])

        channel = self.hs.request("PUT", f"/_matrix/client/v3/rooms/{q(room.room_id)}/send/m.room.message/t1",
                                  {"msgtype": "m.text", "body": "thanks"}, access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.flush_sender()
        bodies = [p["content"].get("body") for p in self.received]
        self.assertIn("thanks", bodies)
        sent = next(p for p in self.received if p["content"].get("body") == "thanks")
        self.assertEqual(sent["prev_events"], [msg.event_id])

    def test_join_refused_by_remote(self) -> None:
        """An invite-only remote room refuses make_join; the client gets the remote's 403."""
        room = self.make_room(join_rule="invite")
        channel = self.join(room)
        self.assertEqual(channel.code, 403, channel.result_body)
        self.assertIsNone(self.hs.run(self.st.rooms.get_room(room.room_id)))

    def test_join_unreachable_server(self) -> None:
        """No reachable server: 502 and nothing stored."""
        room = self.make_room()
        self.network.remove_server(REMOTE)
        channel = self.join(room)
        self.assertEqual(channel.code, 502, channel.result_body)
        self.assertIsNone(self.hs.run(self.st.rooms.get_room(room.room_id)))

    def test_leave_remote_room(self) -> None:
        """Leaving a joined remote room sends the leave to the remote server."""
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        channel = self.hs.request("POST", f"/_matrix/client/v3/rooms/{q(room.room_id)}/leave", {},
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.flush_sender()
        self.assertIn("leave", [p["content"].get("membership") for p in self.received])

    # -- invites ---------------------------------------------------------------------

    def invite_alice(self, room: FakeRoom) -> Event:
        invite = room.add("m.room.member", CAROL, {"membership": "invite"}, self.alice)
        body = {"event": invite.get_pdu_json(), "room_version": room.rv.identifier,
                "invite_room_state": [{"type": "m.room.join_rules", "state_key": "", "sender": CAROL,
                                       "content": {"join_rule": "invite"}}]}
        channel = self.remote.request(self.hs, "PUT",
                                      f"/_matrix/federation/v2/invite/{q(room.room_id)}/{q(invite.event_id)}", body)
        self.assertEqual(channel.code, 200, channel.result_body)
        signed = channel.json_body["event"]
        self.assertIn("test", signed["signatures"])
        return invite

    def test_inbound_invite_then_join(self) -> None:
        """A remote invite is counter-signed and shown to the invitee; joining goes through the inviter."""
        room = self.make_room(join_rule="invite")
        invite = self.invite_alice(room)
        memberships = self.hs.run(self.st.current_state.get_local_memberships(self.alice, ["invite"]))
        self.assertEqual([(m.room_id, m.event_id) for m in memberships], [(room.room_id, invite.event_id)])
        stored = self.hs.run(self.st.events.get_event(invite.event_id))
        assert stored is not None
        self.assertEqual(stored.unsigned["invite_room_state"][0]["type"], "m.room.join_rules")
        channel = self.hs.request("GET", "/_matrix/client/v3/sync", access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        invite_state = channel.json_body["rooms"]["invite"][room.room_id]["invite_state"]["events"]
        self.assertIn("m.room.join_rules", [e["type"] for e in invite_state])
        channel = self.hs.request("POST", f"/_matrix/client/v3/rooms/{q(room.room_id)}/join", {},
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        membership = self.hs.run(self.st.current_state.get_membership(room.room_id, self.alice))
        assert membership is not None
        self.assertEqual(membership.membership, "join")

    def test_reject_invite_of_unreachable_server(self) -> None:
        """Rejecting an invite when the inviting server is gone records a local leave."""
        room = self.make_room(join_rule="invite")
        self.invite_alice(room)
        self.network.remove_server(REMOTE)
        channel = self.hs.request("POST", f"/_matrix/client/v3/rooms/{q(room.room_id)}/leave", {},
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        membership = self.hs.run(self.st.current_state.get_membership(room.room_id, self.alice))
        assert membership is not None
        self.assertEqual(membership.membership, "leave")

    def test_reject_invite_through_remote(self) -> None:
        """Rejecting a reachable server's invite goes through make_leave/send_leave."""
        room = self.make_room(join_rule="invite")
        self.invite_alice(room)
        channel = self.hs.request("POST", f"/_matrix/client/v3/rooms/{q(room.room_id)}/leave", {},
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(room.events[room.state[("m.room.member", self.alice)]].membership, "leave")

    def test_invite_to_a_room_we_left_then_reject_then_join(self) -> None:
        """A room we were in and left: a new invite is out of band (shown by /sync), rejecting it goes
        through make_leave/send_leave, and the next invite's join goes through the remote server."""
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        channel = self.hs.request("POST", f"/_matrix/client/v3/rooms/{q(room.room_id)}/leave", {},
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.flush_sender()
        leave = next(p for p in self.received if p["content"].get("membership") == "leave")
        room.accept(leave)

        for attempt in ("reject", "join"):
            invite = self.invite_alice(room)
            membership = self.hs.run(self.st.current_state.get_membership(room.room_id, self.alice))
            assert membership is not None
            self.assertEqual((membership.membership, membership.event_id), ("invite", invite.event_id))
            channel = self.hs.request("GET", "/_matrix/client/v3/sync", access_token=self.alice_token)
            self.assertEqual(channel.code, 200, channel.result_body)
            self.assertIn(room.room_id, channel.json_body["rooms"]["invite"])
            if attempt == "reject":
                channel = self.hs.request("POST", f"/_matrix/client/v3/rooms/{q(room.room_id)}/leave", {},
                                          access_token=self.alice_token)
                self.assertEqual(channel.code, 200, channel.result_body)
                # The leave went through the room's server, not onto our stale copy of the room.
                self.assertEqual(room.events[room.state[("m.room.member", self.alice)]].membership, "leave")
            else:
                channel = self.hs.request("POST", f"/_matrix/client/v3/rooms/{q(room.room_id)}/join", {},
                                          access_token=self.alice_token)
                self.assertEqual(channel.code, 200, channel.result_body)
                self.assertEqual(room.events[room.state[("m.room.member", self.alice)]].membership, "join")
        membership = self.hs.run(self.st.current_state.get_membership(room.room_id, self.alice))
        assert membership is not None
        self.assertEqual(membership.membership, "join")

    def test_outbound_invite_signed_by_invitee_server(self) -> None:
        """Inviting a remote user asks their server to sign first; the invite carries both signatures."""
        room_id = create_room(self.hs, self.alice, {"preset": "private_chat"})
        asked: list[JsonDict] = []

        async def on_invite(origin: str, content: Any, request: Any, room_id: str,
                            event_id: str) -> tuple[int, JsonDict]:
            asked.append(content)
            rv = KNOWN_ROOM_VERSIONS[content["room_version"]]
            return 200, {"event": sign_event_dict(rv, content["event"], REMOTE, self.remote.signing_key)}

        self.remote.handle("PUT", "/_matrix/federation/v2/invite/(?P<room_id>[^/]*)/(?P<event_id>[^/]*)", on_invite)
        channel = self.hs.request("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/invite", {"user_id": CAROL},
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(len(asked), 1)
        self.assertTrue(any(s["type"] == "m.room.create" for s in asked[0]["invite_room_state"]))
        event_id = self.hs.run(self.st.current_state.get_current_state_event_id(room_id, "m.room.member", CAROL))
        stored = self.hs.run(self.st.events.get_event(event_id))
        assert stored is not None
        self.assertEqual(set(stored.signatures), {"test", REMOTE})

    def test_outbound_invite_refused(self) -> None:
        """If the invitee's server refuses the invite, nothing is stored and the client sees the refusal."""
        room_id = create_room(self.hs, self.alice, {"preset": "private_chat"})

        async def refuse(origin: str, content: Any, request: Any, room_id: str, event_id: str) -> tuple[int, JsonDict]:
            from matrixd.api.errors import MatrixError

            raise MatrixError(403, "no thanks", "M_FORBIDDEN")

        self.remote.handle("PUT", "/_matrix/federation/v2/invite/(?P<room_id>[^/]*)/(?P<event_id>[^/]*)", refuse)
        channel = self.hs.request("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/invite", {"user_id": CAROL},
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 403, channel.result_body)
        self.assertIsNone(self.hs.run(self.st.current_state.get_membership(room_id, CAROL)))

    def test_knock_remote_room(self) -> None:
        """Knocking on a remote knock room stores the knock as our user's out-of-band membership."""
        room = self.make_room(join_rule="knock")
        channel = self.hs.request("POST", f"/_matrix/client/v3/knock/{q(room.room_id)}?server_name={REMOTE}", {},
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        membership = self.hs.run(self.st.current_state.get_membership(room.room_id, self.alice))
        assert membership is not None
        self.assertEqual(membership.membership, "knock")
        self.assertEqual(room.events[room.state[("m.room.member", self.alice)]].membership, "knock")

    def test_withdraw_knock_on_room_whose_id_names_no_server(self) -> None:
        """Leaving a v12 room we knocked on (its id names no server, the knock's sender is us) goes
        through the server of the knock's stripped state."""
        room = self.make_room("12", join_rule="knock")
        self.assertNotIn(":", room.room_id)
        channel = self.hs.request("POST", f"/_matrix/client/v3/knock/{q(room.room_id)}?server_name={REMOTE}", {},
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        channel = self.hs.request("POST", f"/_matrix/client/v3/rooms/{q(room.room_id)}/leave", {},
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(room.events[room.state[("m.room.member", self.alice)]].membership, "leave")
        membership = self.hs.run(self.st.current_state.get_membership(room.room_id, self.alice))
        assert membership is not None
        self.assertEqual(membership.membership, "leave")

    def test_backfill_history_before_join(self) -> None:
        """/messages past the join fetches the earlier history from the remote (/backfill)."""
        room = self.make_room()
        room.add("m.room.history_visibility", CAROL, {"history_visibility": "shared"}, "")
        for i in range(3):
            room.add("m.room.message", CAROL, {"msgtype": "m.text", "body": f"old {i}"})
        self.assertEqual(self.join(room).code, 200)
        channel = self.hs.request("GET", f"/_matrix/client/v3/rooms/{q(room.room_id)}/messages?dir=b&limit=20",
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        bodies = [e["content"].get("body") for e in channel.json_body["chunk"] if e["type"] == "m.room.message"]
        self.assertEqual(bodies, ["old 2", "old 1", "old 0"])
        types = [e["type"] for e in channel.json_body["chunk"]]
        self.assertEqual(types[-1], "m.room.create")
        # Backfilled history changes neither extremities nor current state.
        latest = self.hs.run(self.st.events.get_latest_event_ids_in_room(room.room_id))
        membership = self.hs.run(self.st.current_state.get_membership(room.room_id, self.alice))
        assert membership is not None
        self.assertEqual(latest, [membership.event_id])

    def test_rejoin_after_leaving_goes_through_remote(self) -> None:
        """Rejoining a remote room we left joins through a server still in it, not on our stale copy."""
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        channel = self.hs.request("POST", f"/_matrix/client/v3/rooms/{q(room.room_id)}/leave", {},
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.flush_sender()
        leave = next(p for p in self.received if p["content"].get("membership") == "leave")
        room.accept(leave)  # the remote applies what our sender delivered
        room.add("m.room.topic", CAROL, {"topic": "while you were out"}, "")
        channel = self.hs.request("POST", f"/_matrix/client/v3/rooms/{q(room.room_id)}/join", {},
                                  access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(room.events[room.state[("m.room.member", self.alice)]].membership, "join")
        topic = self.hs.run(self.st.current_state.get_current_state_event(room.room_id, "m.room.topic", ""))
        assert topic is not None
        self.assertEqual(topic.content["topic"], "while you were out")

    def test_inbound_message_wakes_sync(self) -> None:
        """A waiting /sync returns as soon as a remote message arrives over /send."""
        room = self.make_room()
        self.assertEqual(self.join(room).code, 200)
        first = self.hs.request("GET", "/_matrix/client/v3/sync", access_token=self.alice_token)
        since = first.json_body["next_batch"]
        waiting = self.hs.request("GET", f"/_matrix/client/v3/sync?since={since}&timeout=30000",
                                  access_token=self.alice_token, await_result=False)
        self.hs.advance(1)
        self.assertFalse(waiting.is_finished())
        msg = room.add("m.room.message", CAROL, {"msgtype": "m.text", "body": "ping"})
        self.assertEqual(send_transaction(self.hs, self.remote, [msg.get_pdu_json()]).code, 200)
        waiting.await_result(timeout=5)
        timeline = waiting.json_body["rooms"]["join"][room.room_id]["timeline"]["events"]
        self.assertEqual([e["event_id"] for e in timeline], [msg.event_id])
