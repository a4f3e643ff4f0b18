"""The worker's end of TCP replication: connect, authenticate, subscribe, apply rows, catch up.

:class:`ReplicationClient` keeps one connection to the master, reconnecting
with jittered exponential backoff.  After ``WELCOME`` it subscribes to its
streams (sending the position it already has) and handles each stream's
commands strictly in order:

* ``RDATA`` for a stream not yet positioned on this connection is ignored
  (the coming ``POSITION`` covers it); RDATA at or below the applied
  position is a duplicate and ignored; otherwise the rows go through the
  :class:`StreamDispatcher` (invalidate, advance, wake).
* ``POSITION s prev new``: a stream never positioned adopts ``new``; a stream
  at or past ``prev`` moves to ``new``; a stream behind ``prev`` has a gap and
  pages ``(pos, new]`` with the stream's ``get_updates`` (from its own
  database) before anything later for that stream is applied.

A different master epoch in ``HELLO`` (the master restarted) resets the
in-memory streams (typing): their old positions and state mean nothing now.

The client also reports to the master: syncing users (``USER_SYNC``, all
re-sent after ``CLEAR_USER_SYNC`` on every connect) and client IPs (batched
``USER_IP``).
"""

from __future__ import annotations

import collections
import logging
import random
from typing import Any, Callable, Optional, Sequence

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocolFactory
from twisted.internet.protocol import ClientFactory
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from matrixd.replication import metrics
from matrixd.replication.commands import (
    PROTOCOL_VERSION,
    AuthCommand,
    ClearUserSyncCommand,
    Command,
    ErrorCommand,
    HelloCommand,
    PingCommand,
    PositionCommand,
    RdataCommand,
    SubscribeCommand,
    UserIpCommand,
    UserIpEntry,
    UserSyncCommand,
    WelcomeCommand,
    auth_mac,
    is_valid_worker_name,
)
from matrixd.replication.dispatcher import StreamDispatcher
from matrixd.replication.protocol import ConnectionSettings, LineConnection
from matrixd.replication.streams import group_by_token
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

#: Opens a connection with a protocol factory, like ``IStreamClientEndpoint.connect``.
Connector = Callable[[IProtocolFactory], "defer.Deferred[Any]"]


@attrs.frozen(slots=True)
class ClientSettings:
    connection: ConnectionSettings = ConnectionSettings()
    #: Reconnect delays: initial * 2**failures, capped, times a random factor in [0.5, 1).
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    catchup_page_size: int = 500
    user_ip_flush_interval: float = 5.0
    user_ip_batch_size: int = 100
    max_pending_user_ips: int = 10_000


class ClientConnection(LineConnection):
    """The worker's connection to the master."""

    def __init__(self, client: "ReplicationClient") -> None:
        super().__init__(client.clock, client.settings.connection)
        self.client = client
        self.master_epoch: Optional[str] = None

    def on_command(self, cmd: Command) -> None:
        if isinstance(cmd, ErrorCommand):
            logger.warning("replication: master reported an error: %s", cmd.reason)
            self.close()
            return
        if not self.ready:
            self._handshake(cmd)
            return
        if isinstance(cmd, PingCommand):
            return
        if isinstance(cmd, (PositionCommand, RdataCommand)):
            self.client.on_stream_command(self, cmd)
            return
        self.close_with_error(f"unexpected {cmd.NAME} from the master")

    def _handshake(self, cmd: Command) -> None:
        if isinstance(cmd, HelloCommand) and self.master_epoch is None:
            if cmd.protocol_version != PROTOCOL_VERSION:
                self.close_with_error(
                    f"unsupported protocol version {cmd.protocol_version} (this worker speaks {PROTOCOL_VERSION})"
                )
                return
            if cmd.server_name != self.client.server_name:
                self.close_with_error(f"this worker belongs to {self.client.server_name}, not {cmd.server_name}")
                return
            self.master_epoch = cmd.master_epoch
            mac = auth_mac(
                self.client.secret, protocol_version=PROTOCOL_VERSION, server_name=cmd.server_name,
                master_epoch=cmd.master_epoch, nonce=cmd.nonce, worker_name=self.client.worker_name,
            )
            self.send(AuthCommand(self.client.worker_name, mac))
        elif isinstance(cmd, WelcomeCommand) and self.master_epoch is not None:
            self.mark_ready()
            self.client.on_welcome(self)
        else:
            self.close_with_error(f"unexpected {cmd.NAME} during the handshake")

    def on_disconnected(self, reason: Failure) -> None:
        self.client.on_connection_lost(self, reason)


class _ClientFactory(ClientFactory):
    def __init__(self, client: "ReplicationClient") -> None:
        self.client = client

    def buildProtocol(self, addr: Optional[IAddress]) -> ClientConnection:
        return self.client.new_connection()


class _Feed:
    """One stream's commands on one connection, applied strictly in order."""

    __slots__ = ("positioned", "queue", "busy")

    def __init__(self) -> None:
        self.positioned = False
        self.queue: collections.deque[PositionCommand | RdataCommand] = collections.deque()
        self.busy = False


class ReplicationClient:
    """A worker's replication stream from the master.

    Args:
        clock: the injected clock (backoff, heartbeats, batching).
        connector: opens a TCP (or TLS) connection; an ``IStreamClientEndpoint.connect``.
        server_name: the homeserver's name (the master must say the same).
        worker_name: this worker's ``worker_name``.
        secret: ``worker_replication_secret``.
        dispatcher: applies rows in this process (its registry has every stream subscribed to).
        streams: the streams this worker's role needs.
        random_fraction: returns a float in [0, 1) (jitter); injectable for tests.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        connector: Connector,
        server_name: str,
        worker_name: str,
        secret: str,
        dispatcher: StreamDispatcher,
        streams: Sequence[str],
        settings: ClientSettings = ClientSettings(),
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        if not is_valid_worker_name(worker_name):
            raise ValueError(f"invalid worker name {worker_name!r}")
        if not secret:
            raise ValueError("a replication client needs a non-empty shared secret")
        for name in streams:
            dispatcher.registry.get(name)  # KeyError for a stream nobody declared
        self.clock = clock
        self.server_name = server_name
        self.worker_name = worker_name
        self.secret = secret
        self.settings = settings
        self.dispatcher = dispatcher
        self.streams = tuple(dict.fromkeys(streams))
        self._connector = connector
        self._random = random_fraction
        #: Fires once every subscribed stream has been positioned for the first time.
        self.ready: defer.Deferred[None] = defer.Deferred()
        self._conn: Optional[ClientConnection] = None
        self._feeds: dict[str, _Feed] = {}
        self._master_positions: dict[str, int] = {}
        self._master_epoch: Optional[str] = None
        self._failures = 0
        self._retry: Optional[IDelayedCall] = None
        self._connecting = False
        self._stopped = True
        self._syncing: set[str] = set()
        self._pending_ips: dict[tuple[str, Optional[str], str, str], int] = {}
        self._ip_flusher: Optional[LoopingCall] = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        if not self._stopped:
            return
        self._stopped = False
        self._ip_flusher = self.clock.looping_call(self._flush_user_ips, self.settings.user_ip_flush_interval)
        self._connect()

    def stop(self) -> None:
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._ip_flusher is not None and self._ip_flusher.running:
            self._ip_flusher.stop()
        self._ip_flusher = None
        if self._conn is not None:
            self._conn.close()

    @property
    def connected(self) -> bool:
        """Authenticated to the master right now."""
        return self._conn is not None and self._conn.ready and not self._conn.closing

    @property
    def master_epoch(self) -> Optional[str]:
        return self._master_epoch

    def master_position(self, stream: str) -> Optional[int]:
        """The master's position as last announced on any connection."""
        return self._master_positions.get(stream)

    def wait_for_stream_position(self, stream: str, position: int, timeout: float) -> "defer.Deferred[bool]":
        """Read-your-writes: True once this worker has applied ``stream`` up to ``position``."""
        return self.dispatcher.wait_for_stream_position(stream, position, timeout)

    # -- connecting -----------------------------------------------------------------

    def _connect(self) -> None:
        self._retry = None
        if self._stopped or self._connecting or self._conn is not None:
            return
        metrics.RECONNECTS.inc()
        self._connecting = True
        d = self._connector(_ClientFactory(self))
        d.addCallbacks(self._on_connected, self._on_connect_failed)

    def _on_connected(self, _protocol: object) -> None:
        self._connecting = False

    def _on_connect_failed(self, failure: Failure) -> None:
        self._connecting = False
        logger.warning("replication: cannot connect to the master: %s", failure.getErrorMessage())
        self._conn = None
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        if self._stopped or self._retry is not None:
            return
        base = min(self.settings.max_backoff, self.settings.initial_backoff * (2 ** min(self._failures, 30)))
        delay = base * (0.5 + self._random() / 2)
        self._failures += 1
        logger.info("replication: reconnecting in %.2fs", delay)
        self._retry = self.clock.call_later(delay, self._connect)

    def new_connection(self) -> ClientConnection:
        conn = ClientConnection(self)
        if self._conn is not None and not self._conn.closing:
            self._conn.close()
        self._conn = conn
        self._feeds = {}
        return conn

    def on_connection_lost(self, conn: ClientConnection, reason: Failure) -> None:
        if conn is not self._conn:
            return
        logger.info("replication: connection to the master lost: %s", reason.getErrorMessage())
        self._conn = None
        self._feeds = {}
        self._connecting = False
        self._schedule_retry()

    def on_welcome(self, conn: ClientConnection) -> None:
        if conn is not self._conn:
            conn.close()
            return
        self._failures = 0
        epoch = conn.master_epoch
        if self._master_epoch is not None and epoch != self._master_epoch:
            logger.info("replication: the master restarted (epoch %s -> %s); resetting in-memory streams",
                        self._master_epoch, epoch)
            for name in self.streams:
                if self.dispatcher.registry.get(name).in_memory:
                    self.dispatcher.reset(name)
                    self._master_positions.pop(name, None)
        self._master_epoch = epoch
        self._feeds = {name: _Feed() for name in self.streams}
        for name in self.streams:
            conn.send(SubscribeCommand(name, self.dispatcher.position(name)))
        conn.send(ClearUserSyncCommand(self.worker_name))
        now = self.clock.time_msec()
        for user_id in sorted(self._syncing):
            conn.send(UserSyncCommand(user_id, True, now))
        self._flush_user_ips()
        if not self.streams and not self.ready.called:
            self.ready.callback(None)

    # -- stream commands ------------------------------------------------------------

    def on_stream_command(self, conn: ClientConnection, cmd: PositionCommand | RdataCommand) -> None:
        if conn is not self._conn:
            return
        feed = self._feeds.get(cmd.stream)
        if feed is None:
            logger.debug("replication: %s for unsubscribed stream %s ignored", cmd.NAME, cmd.stream)
            return
        feed.queue.append(cmd)
        if not feed.busy:
            defer.ensureDeferred(self._drain(conn, cmd.stream, feed))

    async def _drain(self, conn: ClientConnection, name: str, feed: _Feed) -> None:
        feed.busy = True
        try:
            while feed.queue and conn is self._conn and not conn.closing:
                cmd = feed.queue.popleft()
                if isinstance(cmd, PositionCommand):
                    await self._on_position(name, feed, cmd)
                else:
                    self._on_rdata(name, feed, cmd)
        except Exception:
            # Whatever was not applied will be caught up from our position on reconnect.
            logger.exception("replication: applying %s failed; reconnecting", name)
            conn.close_with_error(f"worker failed to apply stream {name}")
        finally:
            feed.busy = False

    def _on_rdata(self, name: str, feed: _Feed, cmd: RdataCommand) -> None:
        if not feed.positioned:
            logger.debug("replication: RDATA %s %d before POSITION ignored", name, cmd.token)
            return
        self._note_master_position(name, cmd.token)
        current = self.dispatcher.position(name)
        if current is not None and cmd.token <= current:
            return
        stream = self.dispatcher.registry.get(name)
        rows = [stream.decode_row(r) for r in cmd.rows]
        self.dispatcher.apply(name, cmd.token, rows)
        self._update_lag(name)

    async def _on_position(self, name: str, feed: _Feed, cmd: PositionCommand) -> None:
        self._note_master_position(name, cmd.new_token)
        current = self.dispatcher.position(name)
        if current is None:
            self.dispatcher.advance(name, cmd.new_token)
        elif current < cmd.prev_token:
            await self._catch_up(name, current, cmd.new_token)
        elif current > cmd.new_token:
            logger.warning("replication: %s is at %d here but %d on the master", name, current, cmd.new_token)
        else:
            self.dispatcher.advance(name, cmd.new_token)
        feed.positioned = True
        self._update_lag(name)
        if not self.ready.called and all(f.positioned for f in self._feeds.values()):
            self.ready.callback(None)

    async def _catch_up(self, name: str, from_token: int, to_token: int) -> None:
        """Page ``(from_token, to_token]`` of ``name`` from its source and apply it."""
        stream = self.dispatcher.registry.get(name)
        metrics.CATCHUPS.labels(name).inc()
        logger.info("replication: %s catching up from %d to %d", name, from_token, to_token)
        while from_token < to_token:
            page = await stream.get_updates(from_token, to_token, self.settings.catchup_page_size)
            for token, rows in group_by_token(page.rows):
                metrics.CATCHUP_ROWS.labels(name).inc(len(rows))
                self.dispatcher.apply(name, token, rows)
            if page.new_token <= from_token:
                raise RuntimeError(f"stream {name}: get_updates({from_token}, {to_token}) made no progress")
            from_token = page.new_token
            self.dispatcher.advance(name, from_token)

    def _note_master_position(self, name: str, token: int) -> None:
        if token > self._master_positions.get(name, -1):
            self._master_positions[name] = token

    def _update_lag(self, name: str) -> None:
        master = self._master_positions.get(name)
        local = self.dispatcher.position(name)
        if master is not None and local is not None:
            metrics.STREAM_LAG.labels(name).set(max(0, master - local))

    # -- reports to the master ------------------------------------------------------

    def set_user_syncing(self, user_id: str, is_syncing: bool) -> None:
        """``user_id`` started or stopped syncing on this worker (presence)."""
        if is_syncing == (user_id in self._syncing):
            return
        if is_syncing:
            self._syncing.add(user_id)
        else:
            self._syncing.discard(user_id)
        if self.connected:
            assert self._conn is not None
            self._conn.send(UserSyncCommand(user_id, is_syncing, self.clock.time_msec()))

    def record_user_ip(self, user_id: str, device_id: Optional[str], ip: str, user_agent: str) -> None:
        """Remember a client request for the next USER_IP batch (latest per user/device/ip/agent)."""
        # Client-chosen strings: bound them so a batch always fits in one line.
        key = (user_id[:255], None if device_id is None else device_id[:255], ip[:64], user_agent[:512])
        self._pending_ips.pop(key, None)
        self._pending_ips[key] = self.clock.time_msec()
        while len(self._pending_ips) > self.settings.max_pending_user_ips:
            del self._pending_ips[next(iter(self._pending_ips))]

    def _flush_user_ips(self) -> None:
        if not self._pending_ips or not self.connected:
            return
        assert self._conn is not None
        entries = [UserIpEntry(u, d, ip, ua, ts) for (u, d, ip, ua), ts in self._pending_ips.items()]
        self._pending_ips.clear()
        size = self.settings.user_ip_batch_size
        for i in range(0, len(entries), size):
            self._conn.send(UserIpCommand(tuple(entries[i:i + size])))
