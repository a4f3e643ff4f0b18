"""The keyed linearizer serialises work per key in arrival order."""

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.util.linearizer import Linearizer


class LinearizerTests(unittest.TestCase):
    def test_serialises_per_key(self) -> None:
        """A second holder of the same key waits; another key does not."""
        lin = Linearizer()
        order: list[str] = []
        gate: defer.Deferred[None] = defer.Deferred()

        async def work(name: str, key: str, wait: "defer.Deferred[None] | None") -> None:
            async with lin.queue(key):
                order.append(name + ">")
                if wait is not None:
                    await wait
                order.append("<" + name)

        d1 = defer.ensureDeferred(work("a", "k", gate))
        d2 = defer.ensureDeferred(work("b", "k", None))
        d3 = defer.ensureDeferred(work("c", "other", None))
        self.assertEqual(order, ["a>", "c>", "<c"])
        gate.callback(None)
        self.successResultOf(d1)
        self.successResultOf(d2)
        self.successResultOf(d3)
        self.assertEqual(order, ["a>", "c>", "<c", "<a", "b>", "<b"])
        self.assertFalse(lin.is_queued("k"))

    def test_cancelled_waiter_leaves_queue(self) -> None:
        """Cancelling a queued waiter does not block the ones behind it."""
        lin = Linearizer()
        gate: defer.Deferred[None] = defer.Deferred()
        ran: list[str] = []

        async def work(name: str, wait: "defer.Deferred[None] | None") -> None:
            async with lin.queue("k"):
                ran.append(name)
                if wait is not None:
                    await wait

        d1 = defer.ensureDeferred(work("a", gate))
        d2 = defer.ensureDeferred(work("b", None))
        d3 = defer.ensureDeferred(work("c", None))
        d2.cancel()
        self.failureResultOf(d2, defer.CancelledError)
        gate.callback(None)
        self.successResultOf(d1)
        self.successResultOf(d3)
        self.assertEqual(ran, ["a", "c"])
