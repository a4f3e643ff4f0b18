"""Running blocking work (file I/O, image decoding) off the reactor thread."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from twisted.internet import threads

R = TypeVar("R")


class BlockingRunner:
    """Runs functions on the reactor's thread pool and awaits their result.

    Args:
        reactor: provides ``getThreadPool()`` (the real reactor, or the test
            reactor whose pool runs work inline).
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        result: R = await threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), fn, *args)
        return result
