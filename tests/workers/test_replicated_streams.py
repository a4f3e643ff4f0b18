"""The sync and E2E streams between a master and a worker: typing replicas, catch-up over HTTP, epochs, rows."""

from __future__ import annotations

from twisted.trial import unittest

from matrixd.replication.e2e_streams import whole_token_page
from matrixd.replication.server import ReplicationServer, WorkerActivity
from tests.workers.harness import SECRET, WorkerPair


class TypingReplicaTests(unittest.TestCase):
    def setUp(self) -> None:
        self.pair = WorkerPair(self)
        self.alice, self.tok = self.pair.hs.create_user("alice")
        self.room = self.pair.master_request("POST", "/_matrix/client/v3/createRoom", {},
                                             access_token=self.tok).json_body["room_id"]
        assert self.pair.worker.sync is not None
        self.worker_typing = self.pair.worker.sync.typing

    def set_typing_on_master(self, typing: bool) -> None:
        ch = self.pair.master_request("PUT", f"/_matrix/client/v3/rooms/{self.room}/typing/{self.alice}",
                                      {"typing": typing, "timeout": 20000}, access_token=self.tok)
        self.assertEqual(ch.code, 200, ch.json_body)

    def disconnect(self) -> ReplicationServer:
        server = self.pair.hs.components.replication.server
        assert server is not None
        self.pair.network.server_factory = None
        server.close_all()
        self.pair.pump()
        return server

    def reconnect(self, server: ReplicationServer) -> None:
        self.pair.network.server_factory = server
        for _ in range(100):
            self.pair.reactor.advance(1)
            self.pair.pump()
            if self.pair.client.connected:
                break
        self.pair.pump()

    def test_typing_reaches_the_replica(self) -> None:
        """The master's typing lists are copied into the worker's replica by the typing stream."""
        self.set_typing_on_master(True)
        self.assertEqual(self.worker_typing.get_typing_users(self.room), [self.alice])
        self.set_typing_on_master(False)
        self.assertEqual(self.worker_typing.get_typing_users(self.room), [])

    def test_missed_typing_is_caught_up_over_internal_http(self) -> None:
        """A worker that missed typing changes while disconnected pages them from the master's memory."""
        server = self.disconnect()
        self.set_typing_on_master(True)
        self.assertEqual(self.worker_typing.get_typing_users(self.room), [])
        self.reconnect(server)
        self.assertEqual(self.worker_typing.get_typing_users(self.room), [self.alice])
        self.assertTrue(any(uri.startswith("/_matrixd/replication/streams/typing")
                            for _m, uri in self.pair.transport.requests))

    def test_new_master_epoch_resets_the_replica(self) -> None:
        """After a master restart (new epoch) the worker drops typing lists the old master kept."""
        self.set_typing_on_master(True)
        old = self.disconnect()
        new = ReplicationServer(clock=old.clock, server_name=old.server_name, secret=SECRET,
                                publisher=self.pair.hs.components.replication.publisher, receiver=WorkerActivity(),
                                epoch="restarted")
        self.reconnect(new)
        self.assertEqual(self.pair.client.master_epoch, "restarted")
        self.assertEqual(self.worker_typing.get_typing_users(self.room), [])


class PresenceStreamTests(unittest.TestCase):
    def test_presence_change_wakes_a_room_member_syncing_on_the_worker(self) -> None:
        """A presence row carries the user's rooms, so another member's long-poll on the worker wakes."""
        pair = WorkerPair(self)
        alice, alice_tok = pair.hs.create_user("alice")
        bob, bob_tok = pair.hs.create_user("bob")
        room = pair.master_request("POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"},
                                   access_token=alice_tok).json_body["room_id"]
        self.assertEqual(pair.master_request("POST", f"/_matrix/client/v3/join/{room}", {},
                                             access_token=bob_tok).code, 200)
        since = pair.worker_request("GET", "/_matrix/client/v3/sync?set_presence=offline",
                                    access_token=bob_tok).json_body["next_batch"]
        poll = pair.worker_request("GET", f"/_matrix/client/v3/sync?timeout=20000&set_presence=offline&since={since}",
                                   access_token=bob_tok, await_result=False)
        pair.pump()
        self.assertFalse(poll.is_finished())
        ch = pair.master_request("PUT", f"/_matrix/client/v3/presence/{alice}/status", {"presence": "online"},
                                 access_token=alice_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        pair.settle(poll, timeout=5)
        senders = [e["sender"] for e in poll.json_body["presence"]["events"]]
        self.assertIn(alice, senders)
        self.assertNotIn(bob, senders)


class PageTests(unittest.TestCase):
    def test_pages_never_split_an_id(self) -> None:
        """A page cut by its limit ends before the last id's rows, so the next page has all of them."""
        rows = [(1, "a"), (2, "b"), (2, "c"), (3, "d")]
        page = whole_token_page(rows[:3], 10, 3, 3)
        self.assertEqual((list(page.rows), page.new_token, page.limited), ([(1, "a")], 1, True))
        page = whole_token_page(rows, 10, 5, 4)
        self.assertEqual((len(page.rows), page.new_token, page.limited), (4, 10, False))
