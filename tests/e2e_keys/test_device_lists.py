"""Device list tracking: the device_lists stream, /keys/changes, and (changed, left) across joins and leaves."""

from __future__ import annotations

from matrixd.streams.token import StreamName, StreamToken
from tests.e2e_keys.helpers import E2ETestCase


class DeviceListTests(E2ETestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.make_device("alice", "ADEV")
        self.bob = self.make_device("bob", "BDEV")
        self.carol = self.make_device("carol", "CDEV")
        self.src = self.e2e.sync_source

    def changes(self, user_id: str, since: StreamToken) -> tuple[set[str], set[str]]:
        result: tuple[set[str], set[str]] = self.hs.run(
            self.src.get_device_list_changes(user_id, since, self.token_now()))
        return result

    def test_key_upload_visible_to_room_members_only(self) -> None:
        """A device key upload changes the device list for users sharing a room (and the uploader)."""
        room = self.create_room(self.alice.user_id)
        self.join(self.bob.user_id, room)
        since = self.token_now()
        self.upload(self.alice, device_keys=self.alice.device_keys())
        self.assertEqual(self.changes(self.bob.user_id, since), ({self.alice.user_id}, set()))
        self.assertEqual(self.changes(self.alice.user_id, since), ({self.alice.user_id}, set()))
        self.assertEqual(self.changes(self.carol.user_id, since), (set(), set()))
        self.assertGreater(self.src.current_device_list_position(), since.device_lists)
        self.assertEqual(self.token_now().get(StreamName.DEVICE_LISTS), self.src.current_device_list_position())

    def test_upload_wakes_room_members(self) -> None:
        """Waiters on users sharing a room with the uploader are woken; others are not."""
        room = self.create_room(self.alice.user_id)
        self.join(self.bob.user_id, room)
        notifier = self.hs.components.core.notifier
        bob_wait = notifier.wait_for_keys([self.bob.user_id], notifier.current_seq(), 30)
        carol_wait = notifier.wait_for_keys([self.carol.user_id], notifier.current_seq(), 30)
        self.upload(self.alice, device_keys=self.alice.device_keys())
        self.assertTrue(self.successResultOf(bob_wait))
        self.assertFalse(carol_wait.called)
        self.hs.advance(31)
        self.assertFalse(self.successResultOf(carol_wait))

    def test_join_makes_members_changed(self) -> None:
        """When a user joins a room, they and the room's members see each other as changed."""
        room = self.create_room(self.alice.user_id)
        self.join(self.carol.user_id, room)
        since = self.token_now()
        self.join(self.bob.user_id, room)
        self.assertEqual(self.changes(self.bob.user_id, since), ({self.alice.user_id, self.carol.user_id}, set()))
        self.assertEqual(self.changes(self.alice.user_id, since), ({self.bob.user_id}, set()))

    def test_leave_makes_left(self) -> None:
        """Leaving the only shared room puts each in the other's left; a still-shared room does not."""
        room1 = self.create_room(self.alice.user_id)
        room2 = self.create_room(self.alice.user_id)
        self.join(self.bob.user_id, room1)
        self.join(self.carol.user_id, room1)
        self.join(self.carol.user_id, room2)
        since = self.token_now()
        self.leave(self.bob.user_id, room1)
        self.leave(self.carol.user_id, room1)
        self.assertEqual(self.changes(self.alice.user_id, since), (set(), {self.bob.user_id}))
        self.assertEqual(self.changes(self.bob.user_id, since), (set(), {self.alice.user_id, self.carol.user_id}))

    def test_changes_outside_window_ignored(self) -> None:
        """Only changes strictly after `from` and up to `to` count."""
        room = self.create_room(self.alice.user_id)
        self.join(self.bob.user_id, room)
        self.upload(self.alice, device_keys=self.alice.device_keys())
        since = self.token_now()
        self.assertEqual(self.changes(self.bob.user_id, since), (set(), set()))
        until = self.token_now()
        self.upload(self.carol, device_keys=self.carol.device_keys())
        self.join(self.carol.user_id, room)
        result = self.hs.run(self.src.get_device_list_changes(self.bob.user_id, since, until))
        self.assertEqual(result, (set(), set()))

    def test_keys_changes_endpoint(self) -> None:
        """GET /keys/changes answers for sync tokens and refuses malformed ones."""
        room = self.create_room(self.alice.user_id)
        self.join(self.bob.user_id, room)
        since = self.token_now().to_string()
        self.upload(self.alice, device_keys=self.alice.device_keys())
        until = self.token_now().to_string()
        body = self.get(f"/keys/changes?from={since}&to={until}", self.bob.token).json_body
        self.assertEqual(body, {"changed": [self.alice.user_id], "left": []})
        self.assertEqual(self.get(f"/keys/changes?from=garbage&to={until}", self.bob.token, 400)
                         .json_body["errcode"], "M_INVALID_PARAM")
        self.assertEqual(self.get(f"/keys/changes?to={until}", self.bob.token, 400).json_body["errcode"],
                         "M_MISSING_PARAM")

    def test_notify_device_change_hook(self) -> None:
        """The accounts code's hook records a change for a new device."""
        room = self.create_room(self.alice.user_id)
        self.join(self.bob.user_id, room)
        since = self.token_now()
        self.hs.run(self.e2e.device_lists.notify_device_change(self.alice.user_id, ["NEWDEV"]))
        self.assertEqual(self.changes(self.bob.user_id, since), ({self.alice.user_id}, set()))
        rows = self.hs.run(self.e2e.stores.device_lists.get_rows(since.device_lists, self.token_now().device_lists))
        self.assertEqual([(r.user_id, r.device_id) for r in rows], [(self.alice.user_id, "NEWDEV")])

    def test_announcer_holds_keys_behind_unfinished_id(self) -> None:
        """A write finishing before an earlier one wakes its keys only once the earlier id is finished."""
        from matrixd.handlers.sync.announcer import StreamAnnouncer
        from matrixd.storage.device_lists import create_device_list_id_generator
        from matrixd.streams.notifier import Notifier

        gen = self.hs.run(create_device_list_id_generator(self.hs.components.db))
        notifier = Notifier(self.hs.components.clock)
        announcer = StreamAnnouncer.for_id_generator(notifier, StreamName.DEVICE_LISTS, gen)
        first = gen.get_next()
        id1 = first.__enter__()
        with gen.get_next() as id2:
            pass
        woken = notifier.wait_for_keys(["@x:test"], notifier.current_seq(), 10)
        announcer.announce(id2, {"@x:test"})
        self.assertFalse(woken.called)
        self.assertEqual(notifier.current_token.device_lists, id1 - 1)
        first.__exit__(None, None, None)
        announcer.announce(id1, ())
        self.assertTrue(self.successResultOf(woken))
        self.assertEqual(notifier.current_token.device_lists, id2)
