"""The notifier wakes the right waiters and never loses a wake-up."""

from twisted.internet.task import Clock as ReactorClock
from twisted.trial import unittest

from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName, StreamToken
from matrixd.util.clock import Clock


class NotifierTests(unittest.TestCase):
    def setUp(self) -> None:
        self.reactor = ReactorClock()
        self.notifier = Notifier(Clock(self.reactor))

    def test_wakes_on_key(self) -> None:
        """A waiter on a room is woken by a notification for that room, not another."""
        seq = self.notifier.current_seq()
        d = self.notifier.wait_for_keys(["!a:x", "@u:x"], seq, 30)
        self.notifier.on_new_position(StreamName.EVENTS, 1, ["!b:x"])
        self.assertNoResult(d)
        self.notifier.on_new_position(StreamName.EVENTS, 2, ["!a:x"])
        self.assertTrue(self.successResultOf(d))
        self.assertEqual(self.notifier.current_token.events, 2)
        self.assertEqual(self.notifier.waiter_count(), 0)

    def test_times_out(self) -> None:
        """A waiter fires False after its timeout and is forgotten."""
        d = self.notifier.wait_for_keys(["@u:x"], self.notifier.current_seq(), 10)
        self.reactor.advance(9.9)
        self.assertNoResult(d)
        self.reactor.advance(0.2)
        self.assertFalse(self.successResultOf(d))
        self.assertEqual(self.notifier.waiter_count(), 0)

    def test_no_lost_wakeup(self) -> None:
        """A notification between capturing the sequence and waiting returns at once."""
        seq = self.notifier.current_seq()
        self.notifier.on_new_position(StreamName.TYPING, 5, ["!a:x"])
        d = self.notifier.wait_for_keys(["!a:x"], seq, 30)
        self.assertTrue(self.successResultOf(d))

    def test_cancel_cleans_up(self) -> None:
        """Cancelling a wait (client went away) removes the waiter."""
        d = self.notifier.wait_for_keys(["@u:x"], self.notifier.current_seq(), 30)
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(self.notifier.waiter_count(), 0)

    def test_wait_for_token(self) -> None:
        """A token ahead of this process waits until the positions catch up, bounded by a timeout."""
        d = self.notifier.wait_for_token(StreamToken(events=3), 5)
        self.assertNoResult(d)
        self.notifier.on_new_position(StreamName.EVENTS, 3)
        self.successResultOf(d)
        d2 = self.notifier.wait_for_token(StreamToken(events=100), 5)
        self.reactor.advance(5)
        self.successResultOf(d2)
