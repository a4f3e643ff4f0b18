"""The master's end of TCP replication: authenticate workers, serve subscriptions, take their reports.

Handshake (nothing else is accepted, and nothing is sent, before it succeeds)::

    master: HELLO <version> <server_name> <epoch> <nonce>
    worker: AUTH <worker_name> <auth_mac(secret, ...)>
    master: WELCOME                      (or ERROR <reason> and close)

Then the worker sends ``SUBSCRIBE <stream> [<from>]`` per stream; the master
answers ``POSITION <stream> P P`` where P is what the publisher has already
handed out, and from then on forwards every RDATA/POSITION of that stream.
A worker reconnecting under a name that is still connected replaces the old
connection (it is presumed dead).

``USER_SYNC`` / ``CLEAR_USER_SYNC`` / ``USER_IP`` go to a
:class:`WorkerCommandReceiver` (presence and device last-seen tracking).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any, Callable, Coroutine, Optional, Protocol, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import ServerFactory
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
    SubscribeCommand,
    UserIpCommand,
    UserIpEntry,
    UserSyncCommand,
    WelcomeCommand,
    auth_mac,
)
from matrixd.replication.protocol import ConnectionSettings, LineConnection
from matrixd.replication.publisher import StreamPublisher
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)


class WorkerCommandReceiver(Protocol):
    """What the master does with the reports workers send (presence and last-seen)."""

    def on_user_sync(self, instance: str, user_id: str, is_syncing: bool, ts: int) -> None: ...

    def on_clear_user_sync(self, instance: str) -> None: ...

    def on_user_ip(self, instance: str, entries: Sequence[UserIpEntry]) -> None: ...

    def on_worker_disconnected(self, instance: str) -> None: ...


#: ``DeviceStore.record_last_seen``: ``(user_id, device_id, ip, user_agent)``.
RecordLastSeen = Callable[[str, str, Optional[str], Optional[str]], Coroutine[Any, Any, None]]


def new_master_epoch(clock: Clock) -> str:
    """A fresh epoch for this master start: start time plus randomness (alphanumeric)."""
    return f"{clock.time_msec()}{secrets.token_hex(6)}"


class ServerConnection(LineConnection):
    """One worker's connection, seen from the master."""

    def __init__(self, server: "ReplicationServer") -> None:
        super().__init__(server.clock, server.settings)
        self.server = server
        self.worker_name: Optional[str] = None
        self.subscriptions: set[str] = set()
        self._nonce = secrets.token_hex(16)

    def on_connected(self) -> None:
        self.send(HelloCommand(PROTOCOL_VERSION, self.server.server_name, self.server.epoch, self._nonce))

    def on_command(self, cmd: Command) -> None:
        if not self.ready:
            self._handshake(cmd)
            return
        if isinstance(cmd, PingCommand):
            return
        if isinstance(cmd, SubscribeCommand):
            self.server.subscribe(self, cmd)
        elif isinstance(cmd, UserSyncCommand):
            self.server.receiver.on_user_sync(self._name(), cmd.user_id, cmd.is_syncing, cmd.ts)
        elif isinstance(cmd, ClearUserSyncCommand):
            if cmd.instance != self.worker_name:
                self.close_with_error(f"CLEAR_USER_SYNC for another instance {cmd.instance!r}")
                return
            self.server.receiver.on_clear_user_sync(cmd.instance)
        elif isinstance(cmd, UserIpCommand):
            self.server.receiver.on_user_ip(self._name(), cmd.entries)
        elif isinstance(cmd, ErrorCommand):
            logger.warning("replication: worker %s reported an error: %s", self.worker_name, cmd.reason)
            self.close()
        else:
            self.close_with_error(f"unexpected {cmd.NAME} from a worker")

    def _name(self) -> str:
        assert self.worker_name is not None
        return self.worker_name

    def _handshake(self, cmd: Command) -> None:
        if not isinstance(cmd, AuthCommand):
            metrics.AUTH_FAILURES.labels("no_auth").inc()
            self.close_with_error(f"expected AUTH, got {cmd.NAME}")
            return
        expected = auth_mac(
            self.server.secret, protocol_version=PROTOCOL_VERSION, server_name=self.server.server_name,
            master_epoch=self.server.epoch, nonce=self._nonce, worker_name=cmd.worker_name,
        )
        if not hmac.compare_digest(expected, cmd.mac):
            metrics.AUTH_FAILURES.labels("bad_mac").inc()
            logger.warning("replication: bad AUTH from %s claiming %r", self.peer_description(), cmd.worker_name)
            self.close_with_error("authentication failed")
            return
        self.worker_name = cmd.worker_name
        self.mark_ready()
        self.server.register(self)
        self.send(WelcomeCommand())

    def on_disconnected(self, reason: Failure) -> None:
        self.server.unregister(self)


class ReplicationServer(ServerFactory):
    """The master's replication listener (a protocol factory for ``listenTCP``/``listenSSL``).

    Args:
        clock: the injected clock.
        server_name: this homeserver's name (workers check it).
        secret: ``worker_replication_secret``.
        publisher: the master's stream publisher (this server subscribes as a sink).
        receiver: where USER_SYNC / CLEAR_USER_SYNC / USER_IP go.
        epoch: this master start's epoch (new_master_epoch by default).
    """

    def __init__(
        self,
        *,
        clock: Clock,
        server_name: str,
        secret: str,
        publisher: StreamPublisher,
        receiver: WorkerCommandReceiver,
        settings: ConnectionSettings = ConnectionSettings(),
        epoch: Optional[str] = None,
    ) -> None:
        if not secret:
            raise ValueError("a replication server needs a non-empty shared secret")
        self.clock = clock
        self.server_name = server_name
        self.secret = secret
        self.publisher = publisher
        self.receiver = receiver
        self.settings = settings
        self.epoch = epoch or new_master_epoch(clock)
        self._connections: dict[str, ServerConnection] = {}
        publisher.add_sink(self.broadcast)

    def buildProtocol(self, addr: Optional[IAddress]) -> ServerConnection:
        return ServerConnection(self)

    @property
    def connections(self) -> dict[str, ServerConnection]:
        """Authenticated connections by worker name."""
        return dict(self._connections)

    def register(self, conn: ServerConnection) -> None:
        name = conn.worker_name
        assert name is not None
        old = self._connections.get(name)
        if old is not None:
            logger.info("replication: worker %s reconnected; dropping its old connection", name)
            del self._connections[name]
            metrics.CONNECTED_WORKERS.dec()
            self.receiver.on_worker_disconnected(name)
            old.close_with_error("replaced by a new connection from the same worker")
        self._connections[name] = conn
        metrics.CONNECTED_WORKERS.inc()
        logger.info("replication: worker %s connected from %s", name, conn.peer_description())

    def unregister(self, conn: ServerConnection) -> None:
        name = conn.worker_name
        if name is None or self._connections.get(name) is not conn:
            return
        del self._connections[name]
        metrics.CONNECTED_WORKERS.dec()
        logger.info("replication: worker %s disconnected", name)
        self.receiver.on_worker_disconnected(name)

    def subscribe(self, conn: ServerConnection, cmd: SubscribeCommand) -> None:
        if cmd.stream not in self.publisher.stream_names():
            conn.close_with_error(f"unknown stream {cmd.stream!r}")
            return
        position = self.publisher.published_position(cmd.stream)
        conn.subscriptions.add(cmd.stream)
        logger.debug("replication: %s subscribes to %s from %s (at %d)", conn.worker_name, cmd.stream,
                     cmd.from_token, position)
        conn.send(PositionCommand(cmd.stream, position, position))

    def broadcast(self, stream: str, cmd: Command) -> None:
        """Send ``cmd`` to every authenticated connection subscribed to ``stream``."""
        for conn in list(self._connections.values()):
            if stream in conn.subscriptions and not conn.closing:
                conn.send(cmd)

    def close_all(self) -> None:
        """Close every connection (master shutdown)."""
        for conn in list(self._connections.values()):
            conn.close_with_error("master shutting down")


class WorkerActivity:
    """The default :class:`WorkerCommandReceiver`: who is syncing where; last-seen records.

    The presence handler reads :meth:`syncing_users`; ``record_last_seen`` is
    the device store's ``(user_id, device_id, ip, user_agent)`` coroutine.
    """

    def __init__(self, record_last_seen: Optional[RecordLastSeen] = None) -> None:
        self._syncing: dict[str, set[str]] = {}
        self._record_last_seen = record_last_seen

    def syncing_users(self) -> set[str]:
        return {u for users in self._syncing.values() for u in users}

    def syncing_users_of(self, instance: str) -> set[str]:
        return set(self._syncing.get(instance, ()))

    def on_user_sync(self, instance: str, user_id: str, is_syncing: bool, ts: int) -> None:
        users = self._syncing.setdefault(instance, set())
        if is_syncing:
            users.add(user_id)
        else:
            users.discard(user_id)

    def on_clear_user_sync(self, instance: str) -> None:
        self._syncing.pop(instance, None)

    def on_worker_disconnected(self, instance: str) -> None:
        self._syncing.pop(instance, None)

    def on_user_ip(self, instance: str, entries: Sequence[UserIpEntry]) -> None:
        if self._record_last_seen is None:
            return
        for e in entries:
            if e.device_id is None:
                continue
            d: defer.Deferred[None] = defer.ensureDeferred(self._record_last_seen(e.user_id, e.device_id, e.ip, e.user_agent))
            d.addErrback(lambda f: logger.error("replication: recording last seen failed: %s", f.value))
