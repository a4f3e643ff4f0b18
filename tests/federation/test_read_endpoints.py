"""The read-only federation endpoints, requested by fake remote servers through the real HTTP stack."""

from __future__ import annotations

import urllib.parse
from typing import Any

from twisted.trial import unittest

from matrixd.api.errors import MatrixError
from matrixd.federation.read_handler import pdu_for_federation
from matrixd.storage.directory import DirectoryQuery
from matrixd.testing.federation import FakeRemoteServer
from tests.federation.utils import REMOTE, create_room, join, make_federating_homeserver, send_event

OTHER = "other.test"


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class ReadEndpointsTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(self)
        self.other = FakeRemoteServer(self.network, OTHER)
        self.alice, self.alice_token = self.hs.create_user("alice")
        self.room_id = create_room(self.hs, self.alice, {"preset": "public_chat", "room_alias_name": "lobby"})
        self.join_id = join(self.hs, self.room_id, f"@bob:{REMOTE}")
        self.message_id = send_event(self.hs, self.room_id, self.alice, "m.room.message",
                                     {"msgtype": "m.text", "body": "hello"})

    def get(self, server: FakeRemoteServer, path: str) -> Any:
        return server.request(self.hs, "GET", path)

    def assert_forbidden(self, channel: Any) -> None:
        self.assertEqual(channel.code, 403, channel.result_body)
        self.assertEqual(channel.json_body["errcode"], "M_FORBIDDEN")

    # -- /version ----------------------------------------------------------------

    def test_version_needs_no_auth(self) -> None:
        """/version answers anyone with the implementation name and a version string."""
        channel = self.hs.request("GET", "/_matrix/federation/v1/version")
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(channel.json_body["server"]["name"], "matrixd")
        self.assertIsInstance(channel.json_body["server"]["version"], str)

    # -- /event ------------------------------------------------------------------

    def test_event_for_server_in_room(self) -> None:
        """A server with a joined user gets the event as a one-PDU transaction, without unsigned data."""
        channel = self.get(self.remote, f"/_matrix/federation/v1/event/{q(self.message_id)}")
        self.assertEqual(channel.code, 200, channel.result_body)
        body = channel.json_body
        self.assertEqual(body["origin"], "test")
        self.assertIsInstance(body["origin_server_ts"], int)
        self.assertEqual(len(body["pdus"]), 1)
        pdu = body["pdus"][0]
        self.assertEqual(pdu["content"]["body"], "hello")
        self.assertNotIn("unsigned", pdu)
        self.assertIn("test", pdu["signatures"])

    def test_event_refused_to_server_not_in_room(self) -> None:
        """A server with no user in a non-world-readable room may not fetch its events."""
        self.assert_forbidden(self.get(self.other, f"/_matrix/federation/v1/event/{q(self.message_id)}"))

    def test_event_of_world_readable_room_for_anyone(self) -> None:
        """In a world-readable room, events sent while it is world readable go to any server."""
        send_event(self.hs, self.room_id, self.alice, "m.room.history_visibility",
                   {"history_visibility": "world_readable"}, state_key="")
        later = send_event(self.hs, self.room_id, self.alice, "m.room.message", {"msgtype": "m.text", "body": "open"})
        channel = self.get(self.other, f"/_matrix/federation/v1/event/{q(later)}")
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(channel.json_body["pdus"][0]["content"]["body"], "open")
        # The earlier message was sent under "shared" history: the other server gets it redacted.
        channel = self.get(self.other, f"/_matrix/federation/v1/event/{q(self.message_id)}")
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(channel.json_body["pdus"][0]["content"], {})

    def test_event_history_before_join_is_redacted_under_joined_visibility(self) -> None:
        """With "joined" history, a server sees events from before its users joined only redacted."""
        room = create_room(self.hs, self.alice, {"preset": "public_chat",
                                                "initial_state": [{"type": "m.room.history_visibility",
                                                                   "state_key": "",
                                                                   "content": {"history_visibility": "joined"}}]})
        early = send_event(self.hs, room, self.alice, "m.room.message", {"msgtype": "m.text", "body": "secret"})
        join(self.hs, room, f"@bob:{REMOTE}")
        late = send_event(self.hs, room, self.alice, "m.room.message", {"msgtype": "m.text", "body": "hi bob"})
        early_pdu = self.get(self.remote, f"/_matrix/federation/v1/event/{q(early)}").json_body["pdus"][0]
        self.assertNotIn("body", early_pdu["content"])
        late_pdu = self.get(self.remote, f"/_matrix/federation/v1/event/{q(late)}").json_body["pdus"][0]
        self.assertEqual(late_pdu["content"]["body"], "hi bob")

    def test_unknown_event_is_404(self) -> None:
        """An event id we do not have is 404 M_NOT_FOUND."""
        channel = self.get(self.remote, "/_matrix/federation/v1/event/%24nope")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"))

    # -- /state_ids and /state -----------------------------------------------------

    def test_state_ids_before_event(self) -> None:
        """/state_ids gives the state before the event and the auth chain of that state."""
        path = f"/_matrix/federation/v1/state_ids/{q(self.room_id)}?event_id={q(self.message_id)}"
        channel = self.get(self.remote, path)
        self.assertEqual(channel.code, 200, channel.result_body)
        body = channel.json_body
        state = self.hs.run(self.hs.components.core.stores.state.get_state_ids_for_event(self.message_id,
                                                                                         before=True))
        self.assertEqual(set(body["pdu_ids"]), set(state.values()))
        self.assertIn(self.join_id, body["pdu_ids"])
        chain = self.hs.run(self.hs.components.core.stores.events.get_auth_chain_ids(list(state.values())))
        self.assertEqual(set(body["auth_chain_ids"]), chain)

    def test_state_ids_of_join_excludes_the_join(self) -> None:
        """The state at a state event is the state before it (the join itself is not in it)."""
        path = f"/_matrix/federation/v1/state_ids/{q(self.room_id)}?event_id={q(self.join_id)}"
        body = self.get(self.remote, path).json_body
        self.assertNotIn(self.join_id, body["pdu_ids"])

    def test_state_full_events(self) -> None:
        """/state gives the same state as full PDUs, with the auth chain."""
        path = f"/_matrix/federation/v1/state/{q(self.room_id)}?event_id={q(self.message_id)}"
        channel = self.get(self.remote, path)
        self.assertEqual(channel.code, 200, channel.result_body)
        types = {(p["type"], p.get("state_key")) for p in channel.json_body["pdus"]}
        self.assertIn(("m.room.create", ""), types)
        self.assertIn(("m.room.member", f"@bob:{REMOTE}"), types)
        self.assertTrue(all("type" in p for p in channel.json_body["auth_chain"]))

    def test_state_relays_each_event_as_pdu_for_federation_gives_it(self) -> None:
        """/state's PDUs, relayed from their stored text, are exactly the events as served one by one:
        by depth, without unsigned, and a redacted one pruned."""
        topic_id = send_event(self.hs, self.room_id, self.alice, "m.room.topic", {"topic": "secret"}, "")
        channel = self.hs.request("PUT", f"/_matrix/client/v3/rooms/{q(self.room_id)}/redact/{q(topic_id)}/r1",
                                  {}, access_token=self.alice_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        after = send_event(self.hs, self.room_id, self.alice, "m.room.message", {"msgtype": "m.text", "body": "x"})
        channel = self.get(self.remote, f"/_matrix/federation/v1/state/{q(self.room_id)}?event_id={q(after)}")
        self.assertEqual(channel.code, 200, channel.result_body)
        events = self.hs.components.core.stores.events
        state = self.hs.run(self.hs.components.core.stores.state.get_state_ids_for_event(after, before=True))
        chain = self.hs.run(events.get_auth_chain_ids(list(state.values())))
        for key, ids in (("pdus", state.values()), ("auth_chain", chain)):
            stored = sorted(self.hs.run(events.get_events(ids)).values(), key=lambda e: (e.depth, e.event_id))
            self.assertEqual(channel.json_body[key], [pdu_for_federation(e) for e in stored])
        topic = next(p for p in channel.json_body["pdus"] if p["type"] == "m.room.topic")
        self.assertEqual(topic["content"], {})  # redacted
        self.assertFalse(any("unsigned" in p for p in channel.json_body["pdus"] + channel.json_body["auth_chain"]))

    def test_state_refused_to_server_not_in_room(self) -> None:
        """/state and /state_ids are 403 for a server with no joined user."""
        for endpoint in ("state", "state_ids"):
            path = f"/_matrix/federation/v1/{endpoint}/{q(self.room_id)}?event_id={q(self.message_id)}"
            self.assert_forbidden(self.get(self.other, path))

    def test_state_needs_event_id(self) -> None:
        """/state_ids without event_id is 400 M_MISSING_PARAM."""
        channel = self.get(self.remote, f"/_matrix/federation/v1/state_ids/{q(self.room_id)}")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (400, "M_MISSING_PARAM"))

    def test_state_of_event_from_other_room_is_404(self) -> None:
        """An event of another room is not found in this one."""
        other_room = create_room(self.hs, self.alice, {"preset": "public_chat"})
        join(self.hs, other_room, f"@bob:{REMOTE}")
        path = f"/_matrix/federation/v1/state_ids/{q(other_room)}?event_id={q(self.message_id)}"
        self.assertEqual(self.get(self.remote, path).code, 404)

    def test_state_of_unknown_room_is_404(self) -> None:
        """An unknown room is 404."""
        path = f"/_matrix/federation/v1/state_ids/{q('!nope:test')}?event_id={q(self.message_id)}"
        self.assertEqual(self.get(self.remote, path).code, 404)

    # -- /event_auth --------------------------------------------------------------------

    def test_event_auth(self) -> None:
        """/event_auth gives the full auth chain of the event."""
        path = f"/_matrix/federation/v1/event_auth/{q(self.room_id)}/{q(self.message_id)}"
        channel = self.get(self.remote, path)
        self.assertEqual(channel.code, 200, channel.result_body)
        chain = self.hs.run(self.hs.components.core.stores.events.get_auth_chain_ids([self.message_id]))
        pdus = channel.json_body["auth_chain"]
        self.assertEqual(len(pdus), len(chain))
        self.assertEqual({p["type"] for p in pdus} >= {"m.room.power_levels", "m.room.member"}, True)

    def test_event_auth_refused_to_server_not_in_room(self) -> None:
        """/event_auth is 403 for a server with no joined user."""
        path = f"/_matrix/federation/v1/event_auth/{q(self.room_id)}/{q(self.message_id)}"
        self.assert_forbidden(self.get(self.other, path))

    # -- /backfill ------------------------------------------------------------------------

    def test_backfill_walks_back_from_v(self) -> None:
        """/backfill returns v and its ancestors, deepest first, at most limit events."""
        extra = [send_event(self.hs, self.room_id, self.alice, "m.room.message", {"msgtype": "m.text", "body": str(i)})
                 for i in range(3)]
        path = f"/_matrix/federation/v1/backfill/{q(self.room_id)}?v={q(extra[-1])}&limit=3"
        channel = self.get(self.remote, path)
        self.assertEqual(channel.code, 200, channel.result_body)
        pdus = channel.json_body["pdus"]
        self.assertEqual([p["content"]["body"] for p in pdus], ["2", "1", "0"])
        self.assertEqual(channel.json_body["origin"], "test")
        # A larger limit reaches the create event.
        path = f"/_matrix/federation/v1/backfill/{q(self.room_id)}?v={q(extra[-1])}&limit=100"
        pdus = self.get(self.remote, path).json_body["pdus"]
        self.assertEqual(pdus[-1]["type"], "m.room.create")
        depths = [p["depth"] for p in pdus]
        self.assertEqual(depths, sorted(depths, reverse=True))

    def test_backfill_refused_and_validated(self) -> None:
        """/backfill is 403 for servers not in the room, 400 without v or limit."""
        path = f"/_matrix/federation/v1/backfill/{q(self.room_id)}?v={q(self.message_id)}&limit=5"
        self.assert_forbidden(self.get(self.other, path))
        channel = self.get(self.remote, f"/_matrix/federation/v1/backfill/{q(self.room_id)}?limit=5")
        self.assertEqual(channel.code, 400)
        channel = self.get(self.remote, f"/_matrix/federation/v1/backfill/{q(self.room_id)}?v={q(self.message_id)}")
        self.assertEqual(channel.code, 400)

    # -- /get_missing_events ----------------------------------------------------------------

    def test_get_missing_events(self) -> None:
        """Ancestors of latest_events not reachable past earliest_events come back oldest first."""
        extra = [send_event(self.hs, self.room_id, self.alice, "m.room.message", {"msgtype": "m.text", "body": str(i)})
                 for i in range(3)]
        body = {"earliest_events": [self.message_id], "latest_events": [extra[-1]], "limit": 10}
        channel = self.remote.request(self.hs, "POST",
                                      f"/_matrix/federation/v1/get_missing_events/{q(self.room_id)}", body)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual([e["content"]["body"] for e in channel.json_body["events"]], ["0", "1"])

    # -- queries ---------------------------------------------------------------------------

    def test_query_profile(self) -> None:
        """Profile queries return the whole public profile or only the asked field."""
        self.hs.run(self.hs.components.core.stores.profiles.set_avatar_url(self.alice, "mxc://test/a"))
        path = f"/_matrix/federation/v1/query/profile?user_id={q(self.alice)}"
        channel = self.get(self.other, path)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(channel.json_body, {"displayname": "alice", "avatar_url": "mxc://test/a"})
        channel = self.get(self.other, path + "&field=displayname")
        self.assertEqual(channel.json_body, {"displayname": "alice"})

    def test_query_profile_errors(self) -> None:
        """Unknown users and fields are 404; remote users are 400."""
        channel = self.get(self.other, f"/_matrix/federation/v1/query/profile?user_id={q('@nobody:test')}")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"))
        channel = self.get(self.other, f"/_matrix/federation/v1/query/profile?user_id={q(self.alice)}&field=m.tz")
        self.assertEqual(channel.code, 404)
        channel = self.get(self.other, f"/_matrix/federation/v1/query/profile?user_id={q('@x:' + OTHER)}")
        self.assertEqual(channel.code, 400)

    def test_query_directory(self) -> None:
        """A local alias resolves to its room and the servers in it, this server first."""
        channel = self.get(self.other, f"/_matrix/federation/v1/query/directory?room_alias={q('#lobby:test')}")
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(channel.json_body, {"room_id": self.room_id, "servers": ["test", REMOTE]})
        channel = self.get(self.other, f"/_matrix/federation/v1/query/directory?room_alias={q('#none:test')}")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"))

    # -- server ACLs ------------------------------------------------------------------------

    def test_server_acl_denies_room_endpoints(self) -> None:
        """A server denied by m.room.server_acl gets 403 from the room's endpoints, others still work."""
        send_event(self.hs, self.room_id, self.alice, "m.room.server_acl",
                   {"allow": ["*"], "deny": [REMOTE]}, state_key="")
        for path in (
            f"/_matrix/federation/v1/state_ids/{q(self.room_id)}?event_id={q(self.message_id)}",
            f"/_matrix/federation/v1/event_auth/{q(self.room_id)}/{q(self.message_id)}",
            f"/_matrix/federation/v1/backfill/{q(self.room_id)}?v={q(self.message_id)}&limit=1",
            f"/_matrix/federation/v1/event/{q(self.message_id)}",
        ):
            channel = self.get(self.remote, path)
            self.assert_forbidden(channel)
            self.assertIn("ACL", channel.json_body["error"])
        # Queries are not room-scoped.
        self.assertEqual(self.get(self.remote, f"/_matrix/federation/v1/query/profile?user_id={q(self.alice)}").code,
                         200)


class PublicRoomsTestCase(unittest.TestCase):
    def _setup(self, allow: bool) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(
            self, {"allow_public_rooms_over_federation": allow})
        self.alice, self.alice_token = self.hs.create_user("alice")

    def test_public_rooms_disabled_by_default_config(self) -> None:
        """With allow_public_rooms_over_federation off, /publicRooms is 403."""
        self._setup(False)
        channel = self.remote.request(self.hs, "GET", "/_matrix/federation/v1/publicRooms")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (403, "M_FORBIDDEN"))

    def test_public_rooms_lists_published_rooms(self) -> None:
        """Published rooms are listed with their state, biggest first, paginated and filtered."""
        self._setup(True)
        big = create_room(self.hs, self.alice, {"visibility": "public", "preset": "public_chat", "name": "Big room",
                                                "topic": "lots of people"})
        join(self.hs, big, f"@bob:{REMOTE}")
        small = create_room(self.hs, self.alice, {"visibility": "public", "preset": "public_chat", "name": "Small"})
        create_room(self.hs, self.alice, {"preset": "public_chat", "name": "Unpublished"})

        channel = self.remote.request(self.hs, "GET", "/_matrix/federation/v1/publicRooms")
        self.assertEqual(channel.code, 200, channel.result_body)
        chunk = channel.json_body["chunk"]
        self.assertEqual([r["room_id"] for r in chunk], [big, small])
        self.assertEqual(chunk[0]["num_joined_members"], 2)
        self.assertEqual(chunk[0]["name"], "Big room")
        self.assertEqual(chunk[0]["join_rule"], "public")
        self.assertFalse(chunk[0]["world_readable"])
        self.assertEqual(channel.json_body["total_room_count_estimate"], 2)

        page = self.remote.request(self.hs, "GET", "/_matrix/federation/v1/publicRooms?limit=1").json_body
        self.assertEqual([r["room_id"] for r in page["chunk"]], [big])
        nxt = self.remote.request(self.hs, "GET",
                                  f"/_matrix/federation/v1/publicRooms?limit=1&since={page['next_batch']}").json_body
        self.assertEqual([r["room_id"] for r in nxt["chunk"]], [small])
        self.assertIn("prev_batch", nxt)

        found = self.remote.request(self.hs, "POST", "/_matrix/federation/v1/publicRooms",
                                    {"filter": {"generic_search_term": "PEOPLE"}}).json_body
        self.assertEqual([r["room_id"] for r in found["chunk"]], [big])
        spaces = self.remote.request(self.hs, "POST", "/_matrix/federation/v1/publicRooms",
                                     {"filter": {"room_types": ["m.space"]}}).json_body
        self.assertEqual(spaces["chunk"], [])

    def test_public_rooms_bad_input(self) -> None:
        """A bad since token and a malformed filter are 400."""
        self._setup(True)
        channel = self.remote.request(self.hs, "GET", "/_matrix/federation/v1/publicRooms?since=zzz")
        self.assertEqual(channel.code, 400)
        channel = self.remote.request(self.hs, "POST", "/_matrix/federation/v1/publicRooms", {"filter": "x"})
        self.assertEqual(channel.code, 400)
        channel = self.remote.request(self.hs, "POST", "/_matrix/federation/v1/publicRooms", {"limit": "x"})
        self.assertEqual(channel.code, 400)


class RemoteDirectoryClientTestCase(unittest.TestCase):
    def test_fetches_remote_directory(self) -> None:
        """Another server's directory is fetched with GET, or POST when filtered; refusals pass through."""
        hs, network, remote = make_federating_homeserver(self)
        seen: list[Any] = []

        async def directory(origin: str, content: Any, request: Any) -> tuple[int, Any]:
            seen.append((request.method, dict(request.args or {}), content))
            return 200, {"chunk": [{"room_id": "!r:remote.test", "num_joined_members": 1,
                                    "world_readable": False, "guest_can_join": False}]}

        remote.handle("GET", "/_matrix/federation/v1/publicRooms", directory)
        remote.handle("POST", "/_matrix/federation/v1/publicRooms", directory)
        client = hs.components.federation.remote_directory
        body = network.run(client.get_remote_public_rooms(
            REMOTE, limit=5, since=None, query=DirectoryQuery(), third_party_instance_id=None,
            include_all_networks=False))
        self.assertEqual(body["chunk"][0]["room_id"], "!r:remote.test")
        self.assertEqual(seen[0][:2], (b"GET", {b"include_all_networks": [b"false"], b"limit": [b"5"]}))
        network.run(client.get_remote_public_rooms(
            REMOTE, limit=None, since="tok", query=DirectoryQuery(search_term="x", room_types=(None,)),
            third_party_instance_id=None, include_all_networks=False))
        self.assertEqual(seen[1][2], {"include_all_networks": False, "since": "tok",
                                      "filter": {"generic_search_term": "x", "room_types": [None]}})
        with self.assertRaises(MatrixError) as cm:
            network.run(client.get_remote_public_rooms(
                "nowhere.test", limit=None, since=None, query=DirectoryQuery(), third_party_instance_id=None,
                include_all_networks=False))
        self.assertEqual(cm.exception.code, 502)
        closed = FakeRemoteServer(network, "closed.test")
        with self.assertRaises(MatrixError) as cm:
            network.run(client.get_remote_public_rooms(
                closed.server_name, limit=None, since=None, query=DirectoryQuery(), third_party_instance_id=None,
                include_all_networks=False))
        self.assertEqual((cm.exception.code, cm.exception.errcode), (404, "M_UNRECOGNIZED"))
