"""StreamAnnouncer: rows committed out of order still wake their readers once visible."""

from __future__ import annotations

from twisted.internet.task import Clock as ReactorClock
from twisted.trial import unittest

from matrixd.handlers.sync.announcer import StreamAnnouncer
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName
from matrixd.util.clock import Clock


class AnnouncerTests(unittest.TestCase):
    def test_out_of_order_commit_wakes_when_visible(self) -> None:
        """Row 6 committing before row 5 is announced (with its keys) once 5 commits, never before."""
        notifier = Notifier(Clock(ReactorClock()))
        token = {"value": 4}
        announcer = StreamAnnouncer(notifier, StreamName.RECEIPTS, lambda: token["value"])
        seq = notifier.current_seq()
        waiting_b = notifier.wait_for_keys(["room-b"], seq, 30)
        announcer.announce(6, ["room-b"])
        self.assertNoResult(waiting_b)
        self.assertEqual(notifier.current_token.receipts, 4)
        token["value"] = 6
        announcer.announce(5, ["room-a"])
        self.assertTrue(self.successResultOf(waiting_b))
        self.assertEqual(notifier.current_token.receipts, 6)

    def test_in_order_commit_wakes_at_once(self) -> None:
        """A row that is the newest finished one is announced immediately."""
        notifier = Notifier(Clock(ReactorClock()))
        announcer = StreamAnnouncer(notifier, StreamName.ACCOUNT_DATA, lambda: 3)
        waiting = notifier.wait_for_keys(["@u:test"], notifier.current_seq(), 30)
        announcer.announce(3, ["@u:test"])
        self.assertTrue(self.successResultOf(waiting))
        self.assertEqual(notifier.current_token.account_data, 3)

    def test_failed_write_releases_held_rows(self) -> None:
        """When the write holding the position back fails, flush() releases the rows behind it."""
        notifier = Notifier(Clock(ReactorClock()))
        token = {"value": 4}
        announcer = StreamAnnouncer(notifier, StreamName.PRESENCE, lambda: token["value"])
        waiting = notifier.wait_for_keys(["@b:test"], notifier.current_seq(), 30)
        announcer.announce(6, ["@b:test"])
        self.assertNoResult(waiting)
        token["value"] = 6  # id 5 finished by rolling back
        announcer.flush()
        self.assertTrue(self.successResultOf(waiting))
