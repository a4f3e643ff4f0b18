"""The feed from the typing/receipt/presence streams to the federation sender, on its own."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from matrixd.federation.sender.ephemeral_feed import EphemeralStreamFeed
from matrixd.handlers.typing import TypingHandler
from matrixd.streams.notifier import Notifier
from matrixd.util.clock import Clock

ROOM = "!room:hs"


class _Stream:
    """A receipts or presence store whose stream never moves."""

    def get_current_token(self) -> int:
        return 0


class _Sender:
    """Records typing announcements; the first one waits until the test releases it."""

    def __init__(self) -> None:
        self.typing: list[tuple[str, bool]] = []
        self.first: "defer.Deferred[None]" = defer.Deferred()

    async def on_local_typing(self, room_id: str, user_id: str, typing: bool) -> None:
        self.typing.append((user_id, typing))
        if len(self.typing) == 1:
            await self.first


class EphemeralFeedTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock(MemoryReactorClock())
        self.notifier = Notifier(self.clock)
        self.typing = TypingHandler(clock=self.clock, notifier=self.notifier, current_state=cast(Any, None),
                                    initial_position=100)
        self.sender = _Sender()
        self.feed = EphemeralStreamFeed(
            server_name="hs", clock=self.clock, notifier=self.notifier, sender=cast(Any, self.sender),
            typing=self.typing, receipts=cast(Any, _Stream()), presence=cast(Any, _Stream()),
            current_state=cast(Any, None),
        )
        self.feed.start()
        self.addCleanup(self.feed.stop)

    def test_change_while_feeding_is_fed_at_once(self) -> None:
        """A change that arrives while the previous one is being handed on is not left for the next change
        (or the watch's timeout, a minute later)."""
        self.typing.start_typing(ROOM, "@a:hs", 30_000)
        self.assertEqual(self.sender.typing, [("@a:hs", True)])  # and still being handed on
        self.typing.start_typing(ROOM, "@b:hs", 30_000)
        self.sender.first.callback(None)
        self.assertEqual(self.sender.typing, [("@a:hs", True), ("@b:hs", True)])

    def test_remote_users_are_not_announced(self) -> None:
        self.sender.first.callback(None)
        self.typing.start_typing(ROOM, "@x:elsewhere", 30_000)
        self.typing.start_typing(ROOM, "@a:hs", 30_000)
        self.assertEqual(self.sender.typing, [("@a:hs", True)])
