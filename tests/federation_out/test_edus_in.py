"""Inbound EDUs through the EduRegistry: checks on the origin, delivery to sinks, inboxes and the device cache."""

from __future__ import annotations

import urllib.parse
from typing import Any, Sequence

from twisted.trial import unittest

from matrixd.federation.edus.registry import EduRegistry
from matrixd.http.request import MatrixRequest
from matrixd.http.server import ServletResult
from tests.federation_out.utils import REMOTE, create_room, join, pump, started_homeserver

BOB = f"@bob:{REMOTE}"


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def on_remote_typing(self, room_id: str, user_id: str, typing: bool) -> None:
        self.calls.append(("typing", room_id, user_id, typing))

    async def on_remote_receipt(self, room_id: str, receipt_type: str, user_id: str, event_ids: Sequence[str],
                                data: dict[str, Any]) -> None:
        self.calls.append(("receipt", room_id, receipt_type, user_id, list(event_ids), data))

    async def on_remote_presence(self, user_id: str, state: dict[str, Any]) -> None:
        self.calls.append(("presence", user_id, state))


class InboundEduTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = started_homeserver(self)
        self.area = self.hs.components.federation_out
        self.alice, self.token = self.hs.create_user("alice")
        self.room_id = create_room(self.hs, self.alice, {"preset": "public_chat"})
        join(self.hs, self.room_id, BOB)
        self.sink = RecordingSink()
        self.area.typing.add_sink(self.sink)
        self.area.receipts.add_sink(self.sink)
        self.area.presence.add_sink(self.sink)

    def handle(self, edu_type: str, content: dict[str, Any], origin: str = REMOTE) -> None:
        self.hs.run(self.area.edus.handle(origin, edu_type, content))

    def test_registry_routes_and_ignores_unknown(self) -> None:
        """Registered types reach their handler; unknown types and failing handlers do not raise."""
        registry = EduRegistry()
        seen: list[Any] = []

        async def ok(origin: str, content: dict[str, Any]) -> None:
            seen.append((origin, content))

        async def broken(origin: str, content: dict[str, Any]) -> None:
            raise RuntimeError("boom")

        registry.register("a", ok)
        registry.register("b", broken)
        self.assertRaises(ValueError, registry.register, "a", ok)
        self.hs.run(registry.handle("x.org", "a", {"k": 1}))
        self.hs.run(registry.handle("x.org", "b", {}))
        self.hs.run(registry.handle("x.org", "unknown", {}))
        self.assertEqual(seen, [("x.org", {"k": 1})])

    def test_typing_from_server_in_room(self) -> None:
        """m.typing for a user of the origin in a room the origin is in reaches the typing sink."""
        self.handle("m.typing", {"room_id": self.room_id, "user_id": BOB, "typing": True})
        self.assertEqual(self.sink.calls, [("typing", self.room_id, BOB, True)])

    def test_typing_spoofed_or_not_in_room_refused(self) -> None:
        """m.typing for another server's user, or from a server not in the room, is dropped."""
        self.handle("m.typing", {"room_id": self.room_id, "user_id": self.alice, "typing": True})
        self.handle("m.typing", {"room_id": self.room_id, "user_id": "@x:other.test", "typing": True},
                    origin="other.test")
        self.handle("m.typing", {"room_id": self.room_id, "user_id": BOB, "typing": "yes"})
        self.assertEqual(self.sink.calls, [])

    def test_receipts(self) -> None:
        """m.receipt entries of the origin's users are delivered; others are dropped."""
        content = {self.room_id: {"m.read": {
            BOB: {"event_ids": ["$a"], "data": {"ts": 1}},
            self.alice: {"event_ids": ["$b"], "data": {}},
        }}}
        self.handle("m.receipt", content)
        self.assertEqual(self.sink.calls, [("receipt", self.room_id, "m.read", BOB, ["$a"], {"ts": 1})])

    def test_presence(self) -> None:
        """m.presence pushes for the origin's users are delivered without the user_id field."""
        self.handle("m.presence", {"push": [
            {"user_id": BOB, "presence": "online", "last_active_ago": 5},
            {"user_id": self.alice, "presence": "online"},
            {"user_id": BOB, "presence": "dancing"},
        ]})
        self.assertEqual(self.sink.calls, [("presence", BOB, {"presence": "online", "last_active_ago": 5})])

    def test_direct_to_device_into_inbox_once(self) -> None:
        """m.direct_to_device lands in the local device's inbox; a repeated message_id is not delivered twice."""
        edu = {"sender": BOB, "type": "m.room_key_request", "message_id": "m1",
               "messages": {self.alice: {"*": {"hello": 1}}, "@x:elsewhere.test": {"*": {}}}}
        self.handle("m.direct_to_device", edu)
        self.handle("m.direct_to_device", edu)
        to_device = self.hs.components.e2e.to_device
        messages, _ = self.hs.run(to_device.get_messages(self.alice, "TESTDEVICE", 0))
        self.assertEqual(messages, [{"sender": BOB, "type": "m.room_key_request", "content": {"hello": 1}}])

    def test_direct_to_device_spoofed_sender_dropped(self) -> None:
        """A to-device EDU whose sender is not on the origin is dropped."""
        self.handle("m.direct_to_device", {"sender": "@mallory:other.test", "type": "t", "message_id": "m2",
                                           "messages": {self.alice: {"*": {}}}})
        messages, _ = self.hs.run(self.hs.components.e2e.to_device.get_messages(self.alice, "TESTDEVICE", 0))
        self.assertEqual(messages, [])

    def test_device_list_update_wakes_local_users(self) -> None:
        """A remote device list update is recorded so local users sharing a room see the user as changed."""
        before = self.hs.components.e2e.device_lists.current_position()
        self.handle("m.device_list_update", {"user_id": BOB, "device_id": "D", "stream_id": 1, "prev_id": []})
        after = self.hs.components.e2e.device_lists.current_position()
        changed = self.hs.run(self.hs.components.e2e.stores.device_lists.get_changed_users(before, after, self.alice))
        self.assertEqual(changed, {BOB})

    def test_device_list_update_applied_in_order(self) -> None:
        """An update following the cached stream id is applied to the cache, which stays fresh."""
        cache = self.area.remote_devices
        self.hs.run(cache.replace_user(BOB, 5, {"OLD": ({"k": 1}, None)}, {}))
        self.handle("m.device_list_update", {"user_id": BOB, "device_id": "NEW", "stream_id": 6, "prev_id": [5],
                                             "keys": {"k": 2}, "device_display_name": "phone"})
        self.handle("m.device_list_update", {"user_id": BOB, "device_id": "OLD", "stream_id": 7, "prev_id": [6],
                                             "deleted": True})
        cached = self.hs.run(cache.get_cached_users([BOB]))[BOB]
        self.assertFalse(cached.stale)
        self.assertEqual(cached.stream_id, 7)
        self.assertEqual(dict(cached.devices), {"NEW": ({"k": 2}, "phone")})

    def test_device_list_gap_resyncs(self) -> None:
        """An update after a gap in prev_id refetches the user's devices with GET /user/devices."""
        cache = self.area.remote_devices
        self.hs.run(cache.replace_user(BOB, 5, {"OLD": ({"k": 1}, None)}, {}))

        async def devices(origin: str, content: None, request: MatrixRequest, user_id: str) -> ServletResult:
            return 200, {"user_id": urllib.parse.unquote(user_id), "stream_id": 12,
                         "devices": [{"device_id": "A", "keys": {"k": "a"}, "device_display_name": "laptop"}]}

        self.remote.handle("GET", "/_matrix/federation/v1/user/devices/(?P<user_id>[^/]*)", devices)
        d = self.area.edus.handle(REMOTE, "m.device_list_update",
                                  {"user_id": BOB, "device_id": "A", "stream_id": 12, "prev_id": [11]})
        self.network.run(d)
        cached = self.hs.run(cache.get_cached_users([BOB]))[BOB]
        self.assertFalse(cached.stale)
        self.assertEqual(cached.stream_id, 12)
        self.assertEqual(dict(cached.devices), {"A": ({"k": "a"}, "laptop")})

    def test_device_list_gap_resync_failure_leaves_stale(self) -> None:
        """If the resync fails the cache stays marked stale (the next key query asks the server)."""
        cache = self.area.remote_devices
        self.hs.run(cache.replace_user(BOB, 5, {}, {}))
        self.network.remove_server(REMOTE)
        d = self.area.edus.handle(REMOTE, "m.device_list_update",
                                  {"user_id": BOB, "device_id": "A", "stream_id": 9, "prev_id": [8]})
        self.network.run(d)
        self.assertTrue(self.hs.run(cache.get_cached_users([BOB]))[BOB].stale)

    def test_signing_key_update_cached(self) -> None:
        """m.signing_key_update replaces the cached master key of a user we cache."""
        cache = self.area.remote_devices
        self.hs.run(cache.replace_user(BOB, 1, {}, {}))
        master = {"user_id": BOB, "usage": ["master"], "keys": {"ed25519:abc": "abc"}}
        self.handle("m.signing_key_update", {"user_id": BOB, "master_key": master})
        self.handle("m.signing_key_update", {"user_id": self.alice, "master_key": {"user_id": self.alice}})
        self.assertEqual(dict(self.hs.run(cache.get_cached_users([BOB]))[BOB].cross_signing), {"master": master})
        pump(self.hs)


class SyncAreaSinkTestCase(unittest.TestCase):
    """Inbound typing, receipts and presence reach the sync area's handlers."""

    def setUp(self) -> None:
        self.hs, self.network, self.remote = started_homeserver(self)
        self.area = self.hs.components.federation_out
        self.sync = self.hs.components.sync
        self.alice, _ = self.hs.create_user("alice")
        self.room_id = create_room(self.hs, self.alice, {"preset": "public_chat"})
        join(self.hs, self.room_id, BOB)

    def handle(self, edu_type: str, content: dict[str, Any]) -> None:
        self.hs.run(self.area.edus.handle(REMOTE, edu_type, content))

    def test_typing(self) -> None:
        """A remote user's m.typing shows in the room's typing list until stopped."""
        self.handle("m.typing", {"room_id": self.room_id, "user_id": BOB, "typing": True})
        self.assertEqual(self.sync.typing.get_typing_users(self.room_id), [BOB])
        self.handle("m.typing", {"room_id": self.room_id, "user_id": BOB, "typing": False})
        self.assertEqual(self.sync.typing.get_typing_users(self.room_id), [])

    def test_receipt(self) -> None:
        """A remote m.read receipt for a known event is stored on the receipts stream."""
        event_id = self.hs.run(self.hs.components.core.stores.events.get_latest_event_ids_in_room(self.room_id))[0]
        before = self.sync.stores.receipts.get_current_token()
        self.handle("m.receipt", {self.room_id: {"m.read": {BOB: {"event_ids": [event_id, "$unknown"],
                                                                  "data": {"ts": 1}}}}})
        rows = self.hs.run(self.sync.stores.receipts.get_updates(before, 2**62, 10))
        self.assertEqual([(r.user_id, r.event_id) for r in rows], [(BOB, event_id)])

    def test_presence(self) -> None:
        """A remote m.presence update becomes the user's presence here (and is not timed out locally)."""
        self.handle("m.presence", {"push": [{"user_id": BOB, "presence": "online", "last_active_ago": 10,
                                             "status_msg": "hi"}]})
        pump(self.hs, 60, step=1)
        state = self.hs.run(self.sync.presence.get_state(BOB))
        self.assertEqual((state.state, state.status_msg), ("online", "hi"))
