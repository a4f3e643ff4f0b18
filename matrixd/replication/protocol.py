"""Line framing, heartbeats and bounded output shared by both ends of a replication connection.

:class:`LineConnection` turns bytes into :mod:`commands <matrixd.replication.commands>`
and back, and enforces what must hold on every connection whatever its side:

* a line longer than ``max_line_bytes``, invalid UTF-8 or an unparsable
  command is answered with ``ERROR`` and a disconnect;
* nothing is received before the handshake completes within
  ``handshake_timeout`` → disconnect; once ready, each side sends ``PING``
  every ``ping_interval`` and drops a peer it has heard nothing from for
  ``ping_timeout`` seconds (any received line counts);
* output is bounded: the connection registers itself as the transport's
  streaming producer, so a peer that does not read makes the transport call
  :meth:`pauseProducing`; lines sent while paused wait in our queue, and once
  that queue holds more than ``max_queued_bytes`` the peer is too slow: the
  connection is aborted (the peer catches up from the database on reconnect,
  which is cheaper than buffering without bound).

Subclasses implement :meth:`on_connected`, :meth:`on_command`,
:meth:`on_disconnected` and say when the handshake is over with
:meth:`mark_ready`.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Optional

import attrs
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from zope.interface import implementer

from matrixd.replication import metrics
from matrixd.replication.commands import (
    MAX_LINE_BYTES,
    Command,
    CommandParseError,
    ErrorCommand,
    PingCommand,
    parse_line,
)
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)


@attrs.frozen(slots=True)
class ConnectionSettings:
    """Limits and timers of one connection (the same defaults on both sides)."""

    ping_interval: float = 5.0
    ping_timeout: float = 25.0
    handshake_timeout: float = 10.0
    max_line_bytes: int = MAX_LINE_BYTES
    #: Bytes we may hold for a peer that stopped reading before dropping it.
    max_queued_bytes: int = 16 * 1024 * 1024

    def __attrs_post_init__(self) -> None:
        if self.ping_interval <= 0 or self.ping_timeout <= self.ping_interval:
            raise ValueError("ping_timeout must exceed a positive ping_interval")
        if self.handshake_timeout <= 0 or self.max_line_bytes < 1024 or self.max_queued_bytes < self.max_line_bytes:
            raise ValueError("handshake_timeout must be positive and max_queued_bytes >= max_line_bytes >= 1024")


@implementer(IPushProducer)
class LineConnection(Protocol):
    """One end of a replication connection: framing, limits and heartbeats."""

    def __init__(self, clock: Clock, settings: ConnectionSettings) -> None:
        self.clock = clock
        self.settings = settings
        self._buffer = bytearray()
        self._paused = False
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued_bytes = 0
        self._closing = False
        self._ready = False
        self._last_received = 0.0
        self._heartbeat: Optional[LoopingCall] = None
        self._handshake_timer: Optional[IDelayedCall] = None

    # -- what subclasses implement ----------------------------------------------

    def on_connected(self) -> None:
        """The transport is up (the master sends HELLO here)."""

    def on_command(self, cmd: Command) -> None:
        """A well-formed command arrived."""
        raise NotImplementedError

    def on_disconnected(self, reason: Failure) -> None:
        """The connection is gone, whoever closed it."""

    # -- state --------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """The handshake completed: commands other than the handshake's may flow."""
        return self._ready

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting for a paused transport (the slow-consumer measure)."""
        return self._queued_bytes

    def mark_ready(self) -> None:
        """The handshake is done: stop its timer, start heartbeats."""
        if self._ready:
            return
        self._ready = True
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None
        self._heartbeat = self.clock.looping_call(self._on_heartbeat, self.settings.ping_interval)

    def peer_description(self) -> str:
        peer = self.transport.getPeer() if self.transport is not None else None
        return str(peer)

    # -- twisted Protocol -------------------------------------------------------

    def connectionMade(self) -> None:
        transport: Any = self.transport
        assert transport is not None
        transport.registerProducer(self, True)
        self._last_received = self.clock.time()
        self._handshake_timer = self.clock.call_later(self.settings.handshake_timeout, self._on_handshake_timeout)
        self.on_connected()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closing = True
        self._stop_timers()
        self._queue.clear()
        self._queued_bytes = 0
        self.on_disconnected(reason)

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self._last_received = self.clock.time()
        self._buffer += data
        start = 0
        limit = self.settings.max_line_bytes
        while not self._closing:
            end = self._buffer.find(b"\n", start)
            if end < 0:
                if len(self._buffer) - start > limit:
                    self.close_with_error(f"line longer than {limit} bytes")
                    return
                break
            if end - start > limit:
                self.close_with_error(f"line longer than {limit} bytes")
                return
            raw = bytes(self._buffer[start:end])
            start = end + 1
            self._line_received(raw)
        del self._buffer[:start]

    def _line_received(self, raw: bytes) -> None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.close_with_error("line is not UTF-8")
            return
        try:
            cmd = parse_line(text)
        except CommandParseError as e:
            self.close_with_error(f"bad command: {e}")
            return
        metrics.COMMANDS_RECEIVED.labels(cmd.NAME).inc()
        try:
            self.on_command(cmd)
        except Exception:
            logger.exception("replication: error handling %s from %s", cmd.NAME, self.peer_description())
            self.close_with_error("internal error")

    # -- sending ------------------------------------------------------------------

    def line_fits(self, cmd: Command) -> bool:
        """Whether ``cmd`` is short enough for the peer to accept."""
        return len(cmd.to_line().encode("utf-8")) <= self.settings.max_line_bytes

    def send(self, cmd: Command) -> None:
        """Queue ``cmd`` for the peer (dropped silently once the connection is closing).

        Raises:
            ValueError: the line is longer than the peer accepts (check :meth:`line_fits`).
        """
        if self._closing or self.transport is None:
            return
        line = cmd.to_line().encode("utf-8")
        if len(line) > self.settings.max_line_bytes:
            raise ValueError(f"{cmd.NAME} line of {len(line)} bytes exceeds {self.settings.max_line_bytes}")
        metrics.COMMANDS_SENT.labels(cmd.NAME).inc()
        data = line + b"\n"
        if self._paused:
            self._queue.append(data)
            self._queued_bytes += len(data)
            if self._queued_bytes > self.settings.max_queued_bytes:
                metrics.SLOW_CONSUMER_DISCONNECTS.inc()
                logger.warning(
                    "replication: %s is not reading (%d bytes queued); disconnecting it",
                    self.peer_description(), self._queued_bytes,
                )
                self.abort()
            return
        self.transport.write(data)

    def close_with_error(self, reason: str) -> None:
        """Send ``ERROR reason`` and close (after the transport flushes what it has)."""
        if self._closing:
            return
        logger.warning("replication: closing connection to %s: %s", self.peer_description(), reason)
        self.send(ErrorCommand(reason))
        self.close()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._stop_timers()
        if self.transport is not None:
            self.transport.loseConnection()

    def abort(self) -> None:
        """Drop the connection at once, discarding anything unsent."""
        self._closing = True
        self._stop_timers()
        self._queue.clear()
        self._queued_bytes = 0
        if self.transport is not None:
            transport: Any = self.transport
            transport.abortConnection()

    # -- IPushProducer (the transport calls these) ----------------------------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        while self._queue and not self._paused and not self._closing and self.transport is not None:
            data = self._queue.popleft()
            self._queued_bytes -= len(data)
            self.transport.write(data)

    def stopProducing(self) -> None:
        self._closing = True
        self._queue.clear()
        self._queued_bytes = 0

    # -- timers -------------------------------------------------------------------

    def _on_handshake_timeout(self) -> None:
        self._handshake_timer = None
        if not self._ready and not self._closing:
            metrics.HEARTBEAT_TIMEOUTS.inc()
            self.close_with_error("handshake timed out")

    def _on_heartbeat(self) -> None:
        if self._closing:
            return
        silent_for = self.clock.time() - self._last_received
        if silent_for > self.settings.ping_timeout:
            metrics.HEARTBEAT_TIMEOUTS.inc()
            logger.warning(
                "replication: nothing from %s for %.0fs; disconnecting", self.peer_description(), silent_for
            )
            self.abort()
            return
        self.send(PingCommand(self.clock.time_msec()))

    def _stop_timers(self) -> None:
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        self._heartbeat = None
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None
