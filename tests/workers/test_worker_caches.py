"""A worker's room caches follow what the master writes (replication invalidates them)."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from tests.workers.harness import WorkerPair

V3 = "/_matrix/client/v3"


class WorkerRoomCacheTests(unittest.TestCase):
    def setUp(self) -> None:
        self.pair = WorkerPair(self)
        self.alice, self.alice_tok = self.pair.hs.create_user("alice")
        self.bob, self.bob_tok = self.pair.hs.create_user("bob")
        self.room = self.pair.master_request("POST", f"{V3}/createRoom", {"preset": "public_chat"},
                                             access_token=self.alice_tok).json_body["room_id"]
        self.current_state = self.pair.worker.core.stores.current_state

    def members_on_worker(self) -> list[str]:
        return self.successResultOf(defer.ensureDeferred(self.current_state.get_users_in_room(self.room)))

    def test_cached_members_follow_a_join_and_a_leave_on_the_master(self) -> None:
        """A federation sender decides from this list where typing and receipts go: it must not go stale."""
        self.assertEqual(self.members_on_worker(), [self.alice])  # read once: cached on the worker
        joined = self.pair.master_request("POST", f"{V3}/rooms/{self.room}/join", {}, access_token=self.bob_tok)
        self.assertEqual(joined.code, 200, joined.json_body)
        self.assertEqual(self.members_on_worker(), sorted([self.alice, self.bob]))
        left = self.pair.master_request("POST", f"{V3}/rooms/{self.room}/leave", {}, access_token=self.bob_tok)
        self.assertEqual(left.code, 200, left.json_body)
        self.assertEqual(self.members_on_worker(), [self.alice])

    def test_a_worker_refuses_to_write_events(self) -> None:
        """Only the master writes events; a worker's room core is for reading."""
        writer = self.pair.worker.core.stores.writer
        failure = self.failureResultOf(defer.ensureDeferred(writer.persist_events([])), RuntimeError)
        self.assertIn("master", str(failure.value))
