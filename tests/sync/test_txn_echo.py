"""The sending device's own long-poll sees unsigned.transaction_id on its event."""

from twisted.trial import unittest

from matrixd.testing.homeserver import make_homeserver


class TransactionIdEchoTests(unittest.TestCase):
    def test_long_poll_echoes_txn_id(self) -> None:
        """A long-poll woken by the device's own send carries its transaction id; others' do not."""
        hs = make_homeserver(self)
        _, alice = hs.create_user("alice")
        _, bob = hs.create_user("bob")
        room = hs.request("POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"},
                          access_token=alice).json_body["room_id"]
        self.assertEqual(hs.request("POST", f"/_matrix/client/v3/join/{room}", {}, access_token=bob).code, 200)
        since_a = hs.request("GET", "/_matrix/client/v3/sync", access_token=alice).json_body["next_batch"]
        since_b = hs.request("GET", "/_matrix/client/v3/sync", access_token=bob).json_body["next_batch"]
        poll_a = hs.request("GET", f"/_matrix/client/v3/sync?since={since_a}&timeout=30000",
                            access_token=alice, await_result=False)
        poll_b = hs.request("GET", f"/_matrix/client/v3/sync?since={since_b}&timeout=30000",
                            access_token=bob, await_result=False)
        ch = hs.request("PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/txn-42",
                        {"msgtype": "m.text", "body": "hi"}, access_token=alice)
        self.assertEqual(ch.code, 200, ch.json_body)
        event_id = ch.json_body["event_id"]
        for poll, expect in ((poll_a, "txn-42"), (poll_b, None)):
            poll.await_result()
            timeline = poll.json_body["rooms"]["join"][room]["timeline"]["events"]
            mine = [e for e in timeline if e["event_id"] == event_id]
            self.assertEqual(len(mine), 1)
            self.assertEqual(mine[0].get("unsigned", {}).get("transaction_id"), expect)
