"""The master's publisher: turns committed rows into dispatcher runs and RDATA/POSITION commands.

Writers call :meth:`StreamPublisher.notify` after a commit (they do not pass
rows).  A publishing pass then reads the stream's ``current_token()`` — the
position below which every id is finished — and pages the rows in
``(published, current]`` with the stream's own ``get_updates``, exactly as a
worker catching up would.  For each token it

1. runs the master's :class:`StreamDispatcher` (invalidate, advance, wake), and
2. hands ``RDATA stream token rows`` to every sink (the TCP server broadcasts
   it to subscribed workers),

then, if the position moved past the last row (ids that carry no rows),
``POSITION stream last new``.  A token whose rows do not fit in one line is
announced as ``POSITION stream token token`` instead: workers see they are
behind and page the rows from the database themselves.

Passes are serialised and coalesced (notifications during a pass cause one
more pass), and a slow poll (``poll_interval``) re-checks every stream so a
writer that forgets to notify delays rows instead of losing them.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from twisted.internet import defer
from twisted.internet.task import LoopingCall

from matrixd.replication.commands import MAX_LINE_BYTES, Command, PositionCommand, RdataCommand
from matrixd.replication.dispatcher import StreamDispatcher
from matrixd.replication.streams import ReplicationStream, StreamRegistry, group_by_token
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

#: Receives ``(stream name, command)`` for every subscribed connection.
CommandSink = Callable[[str, Command], None]


class StreamPublisher:
    """Runs on the writer (the master) of the streams in ``registry``."""

    def __init__(
        self,
        registry: StreamRegistry,
        dispatcher: StreamDispatcher,
        clock: Clock,
        *,
        page_size: int = 500,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self._registry = registry
        self._dispatcher = dispatcher
        self._clock = clock
        self._page_size = page_size
        self._max_line_bytes = max_line_bytes
        self._sinks: list[CommandSink] = []
        self._published: dict[str, int] = {}
        self._pending: dict[str, None] = {}
        self._running = False
        self._poller: Optional[LoopingCall] = None
        for stream in registry:
            self._track(stream.name)

    def _track(self, name: str) -> None:
        stream = self._registry.get(name)
        if stream.current_token is None:
            raise ValueError(f"stream {stream.name!r} has no current_token: this process does not write it")
        token = stream.current_token()
        self._published[stream.name] = token
        self._dispatcher.set_position(stream.name, token)

    def add_stream(self, stream: ReplicationStream[Any]) -> None:
        """Register and publish one more stream (an area built after replication adds its streams)."""
        self._registry.register(stream)
        self._track(stream.name)

    def add_sink(self, sink: CommandSink) -> None:
        self._sinks.append(sink)

    def stream_names(self) -> list[str]:
        return list(self._published)

    def published_position(self, stream: str) -> int:
        """The position up to which rows were handed to the sinks (what a new subscriber starts from)."""
        return self._published[stream]

    def start_polling(self, interval: float = 5.0) -> None:
        if self._poller is None:
            self._poller = self._clock.looping_call(lambda: self.notify(*self._registry.names()), interval)

    def stop(self) -> None:
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        self._poller = None

    def notify(self, *streams: str) -> None:
        """Rows of ``streams`` may have been committed: publish what is new (now, or after the running pass)."""
        for name in streams:
            if name not in self._published:
                raise KeyError(f"unknown stream {name!r}")
            self._pending[name] = None
        if not self._running:
            defer.ensureDeferred(self._run())

    async def _run(self) -> None:
        self._running = True
        try:
            while self._pending:
                name = next(iter(self._pending))
                del self._pending[name]
                try:
                    await self._publish(name)
                except Exception:
                    # The rows stay in the database; the next notify or poll retries from `published`.
                    logger.exception("replication: publishing stream %s failed", name)
        finally:
            self._running = False

    async def _publish(self, name: str) -> None:
        stream = self._registry.get(name)
        assert stream.current_token is not None
        to_token = stream.current_token()
        while self._published[name] < to_token:
            from_token = self._published[name]
            page = await stream.get_updates(from_token, to_token, self._page_size)
            fresh = [(token, rows) for token, rows in group_by_token(page.rows) if token > self._published[name]]
            if fresh:
                # One local application for the whole page (a remote join stores thousands of
                # outliers, one token each): caches, position and wake-ups as for its last token.
                last = fresh[-1][0]
                self._dispatcher.apply(name, last, [row for _token, rows in fresh for row in rows])
                if self._sinks:
                    for token, rows in fresh:
                        cmd: Command = RdataCommand(name, token, tuple(stream.encode_row(r) for r in rows))
                        if len(cmd.to_line().encode("utf-8")) > self._max_line_bytes:
                            logger.info("replication: %s rows at %d too large for one line; sending POSITION",
                                        name, token)
                            cmd = PositionCommand(name, token, token)
                        self._send(name, cmd)
                self._published[name] = last
            if page.new_token <= from_token:
                raise RuntimeError(f"stream {name}: get_updates({from_token}, {to_token}) made no progress")
            if page.new_token > self._published[name]:
                prev = self._published[name]
                self._dispatcher.advance(name, page.new_token)
                self._published[name] = page.new_token
                self._send(name, PositionCommand(name, prev, page.new_token))

    def _send(self, name: str, cmd: Command) -> None:
        for sink in self._sinks:
            try:
                sink(name, cmd)
            except Exception:
                logger.exception("replication: sink failed for %s", cmd.NAME)
