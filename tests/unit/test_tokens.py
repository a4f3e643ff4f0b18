"""Sync and pagination token round-trips and strict parsing."""

from twisted.trial import unittest

from matrixd.api.errors import InvalidParamError
from matrixd.streams.token import RoomStreamToken, StreamName, StreamToken


class StreamTokenTests(unittest.TestCase):
    def test_round_trip(self) -> None:
        """A token serialises with a version prefix and parses back to the same positions."""
        t = StreamToken(events=5, receipts=2, typing=1700000000000)
        s = t.to_string()
        self.assertTrue(s.startswith("m1_"))
        self.assertEqual(StreamToken.parse(s), t)

    def test_rejects_garbage(self) -> None:
        """Anything that is not a token we could have issued is refused with M_INVALID_PARAM."""
        for bad in ["", "s72594_4483", "m1_1_2", "m1_a_0_0_0_0_0_0_0", "m2_0_0_0_0_0_0_0_0",
                    "m1_-1_0_0_0_0_0_0_0", "m1_0_0_0_0_0_0_0_0_0", "m1_" + "9" * 30 + "_0_0_0_0_0_0_0"]:
            with self.assertRaises(InvalidParamError, msg=bad):
                StreamToken.parse(bad)

    def test_advance_never_moves_back(self) -> None:
        """copy_and_advance ignores positions behind the current one."""
        t = StreamToken(events=10)
        self.assertEqual(t.copy_and_advance(StreamName.EVENTS, 3).events, 10)
        self.assertEqual(t.copy_and_advance(StreamName.EVENTS, 11).events, 11)

    def test_is_after(self) -> None:
        """is_after is true when any stream is ahead."""
        self.assertTrue(StreamToken(receipts=1).is_after(StreamToken()))
        self.assertFalse(StreamToken().is_after(StreamToken(events=1)))


class RoomStreamTokenTests(unittest.TestCase):
    def test_forms(self) -> None:
        """Topological and stream-only tokens round-trip."""
        for t in [RoomStreamToken(5, 3), RoomStreamToken(7), RoomStreamToken(-3, 5), RoomStreamToken(-9)]:
            self.assertEqual(RoomStreamToken.parse(t.to_string()), t)

    def test_sync_token_accepted_for_pagination(self) -> None:
        """A sync next_batch can be used as a /messages from token."""
        self.assertEqual(RoomStreamToken.parse_pagination(StreamToken(events=9).to_string()), RoomStreamToken(9))

    def test_bad(self) -> None:
        """Malformed pagination tokens are M_INVALID_PARAM."""
        for bad in ["", "t", "t1", "t-1-2", "sx", "x5", "s--1", "t1--", "s-"]:
            with self.assertRaises(InvalidParamError, msg=bad):
                RoomStreamToken.parse(bad)
