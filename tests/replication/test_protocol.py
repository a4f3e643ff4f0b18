"""The replication protocol over in-memory transports: handshake, refusals, heartbeats, flow control, reconnects."""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from matrixd.replication import metrics
from matrixd.replication.client import ClientSettings
from matrixd.replication.commands import PROTOCOL_VERSION, auth_mac
from matrixd.replication.protocol import ConnectionSettings
from matrixd.replication.server import ServerConnection
from tests.replication.harness import SECRET, SERVER_NAME, FakeNetwork, Master, NotesLog, Worker


class RawPeer(Protocol):
    """A hand-driven peer: records the lines it receives and writes whatever a test tells it to."""

    def __init__(self, greeting: Optional[str] = None) -> None:
        self.greeting = greeting
        self.lines: list[str] = []
        self.buffer = b""
        self.lost = False

    def connectionMade(self) -> None:
        if self.greeting is not None:
            self.send(self.greeting)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        self.lines.extend(line.decode() for line in lines)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True

    def send(self, line: str) -> None:
        assert self.transport is not None
        self.transport.write(line.encode() + b"\n")

    def verbs(self) -> list[str]:
        return [line.split(" ")[0] for line in self.lines]

    def authenticate(self, name: str = "raw", secret: str = SECRET) -> None:
        """Answer the HELLO already received with a correct AUTH."""
        _, version, server_name, epoch, nonce = self.lines[0].split(" ")
        mac = auth_mac(secret, protocol_version=int(version), server_name=server_name, master_epoch=epoch,
                       nonce=nonce, worker_name=name)
        self.send(f"AUTH {name} {mac}")


class _RawFactory(Factory):
    def __init__(self, greeting: Optional[str] = None) -> None:
        self.greeting = greeting
        self.peers: list[RawPeer] = []

    def buildProtocol(self, addr: Any) -> RawPeer:
        peer = RawPeer(self.greeting)
        self.peers.append(peer)
        return peer


def _sample(metric: Any, labels: Optional[dict[str, str]] = None) -> float:
    target = metric.labels(**labels) if labels else metric
    return float(target._value.get())


class ProtocolTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_700_000_000)
        self.network = FakeNetwork(self.reactor)
        self.log = NotesLog()

    def start_master(self, **kwargs: Any) -> Master:
        master = Master(self.reactor, [self.log], **kwargs)
        self.network.server_factory = master.server
        return master

    def start_worker(self, **kwargs: Any) -> Worker:
        worker = Worker(self.reactor, self.network, [self.log], **kwargs)
        worker.client.start()
        self.addCleanup(worker.client.stop)
        self.network.pump()
        return worker

    def advance(self, seconds: float, step: float = 1.0) -> None:
        """Move the clock in steps, delivering traffic in between (a live network)."""
        elapsed = 0.0
        while elapsed < seconds:
            self.reactor.advance(min(step, seconds - elapsed))
            elapsed += step
            self.network.pump()

    def raw_client(self) -> RawPeer:
        """A RawPeer connected to the listening master (it receives HELLO at once)."""
        factory = _RawFactory()
        self.network.connect(factory)
        self.network.pump()
        return factory.peers[0]

    def server_conn(self, master: Master, name: str = "worker1") -> ServerConnection:
        return master.server.connections[name]


class HandshakeTests(ProtocolTestCase):
    def test_handshake_subscribe_and_rdata(self) -> None:
        """A worker authenticates, is positioned at the master's position, then receives new rows as RDATA."""
        self.log.write("!r1", "before")
        master = self.start_master()
        worker = self.start_worker()
        self.assertTrue(worker.client.connected)
        self.assertEqual(list(master.server.connections), ["worker1"])
        self.assertEqual(self.server_conn(master).subscriptions, {"notes"})
        self.successResultOf(worker.client.ready)
        self.assertEqual(worker.dispatcher.position("notes"), 1)
        self.assertEqual(worker.invalidated, [])  # a fresh worker adopts the position; nothing to replay

        token = self.log.write("!r1", "a", "b")
        master.publisher.notify("notes")
        self.network.pump()
        self.assertEqual(worker.texts(), ["a", "b"])
        self.assertEqual(worker.dispatcher.position("notes"), token)
        self.assertEqual(worker.notifier.current_token.receipts, token)
        self.assertEqual(worker.client.master_epoch, master.server.epoch)

    def test_bad_secret_refused(self) -> None:
        """A worker with the wrong secret gets ERROR, is disconnected, and never receives stream data."""
        master = self.start_master()
        failures = _sample(metrics.AUTH_FAILURES, {"reason": "bad_mac"})
        peer = self.raw_client()
        self.log.write("!r", "secret stuff")
        master.publisher.notify("notes")
        peer.authenticate(secret="wrong")
        self.network.pump()
        self.assertEqual(peer.verbs(), ["HELLO", "ERROR"])
        self.assertEqual(peer.lines[1], "ERROR authentication failed")
        self.assertTrue(peer.lost)
        self.assertEqual(master.server.connections, {})
        self.assertEqual(_sample(metrics.AUTH_FAILURES, {"reason": "bad_mac"}), failures + 1)

    def test_real_worker_with_bad_secret_keeps_retrying_without_data(self) -> None:
        """The real client with a wrong secret is refused on every attempt and applies nothing."""
        self.log.write("!r", "x")
        master = self.start_master()
        worker = self.start_worker(secret="wrong")
        self.advance(60)
        self.assertGreater(self.network.attempts, 3)
        self.assertIsNone(worker.dispatcher.position("notes"))
        self.assertFalse(worker.client.ready.called)
        self.assertEqual(master.server.connections, {})

    def test_wrong_protocol_version_refused(self) -> None:
        """A worker answers a HELLO of another protocol version with ERROR and never sends AUTH."""
        fake_master = _RawFactory(greeting=f"HELLO {PROTOCOL_VERSION + 1} {SERVER_NAME} epoch1 nonce1")
        self.network.server_factory = fake_master
        worker = self.start_worker()
        peer = fake_master.peers[0]
        self.assertEqual(peer.verbs(), ["ERROR"])
        self.assertIn("unsupported protocol version", peer.lines[0])
        self.assertTrue(peer.lost)
        self.assertFalse(worker.client.connected)

    def test_wrong_server_name_refused(self) -> None:
        """A worker refuses a master of another homeserver."""
        fake_master = _RawFactory(greeting=f"HELLO {PROTOCOL_VERSION} other.example epoch1 nonce1")
        self.network.server_factory = fake_master
        self.start_worker()
        self.assertEqual(fake_master.peers[0].verbs(), ["ERROR"])

    def test_commands_before_auth_refused(self) -> None:
        """Anything but AUTH first (SUBSCRIBE, PING, ...) is answered with ERROR and a disconnect."""
        self.log.write("!r", "x")
        master = self.start_master()
        for line in ["SUBSCRIBE notes", "PING 1", "WELCOME", "USER_SYNC @a:test true 1"]:
            peer = self.raw_client()
            peer.send(line)
            self.network.pump()
            self.assertEqual(peer.verbs(), ["HELLO", "ERROR"], line)
            self.assertTrue(peer.lines[1].startswith("ERROR expected AUTH"), peer.lines[1])
            self.assertTrue(peer.lost)
        self.assertEqual(master.server.connections, {})

    def test_second_auth_and_master_verbs_refused(self) -> None:
        """After WELCOME a worker may not AUTH again or send master-only verbs."""
        self.start_master()
        for line in ["AUTH raw " + "0" * 64, "POSITION notes 1 1", "RDATA notes 1 [{}]"]:
            peer = self.raw_client()
            peer.authenticate()
            self.network.pump()
            peer.send(line)
            self.network.pump()
            self.assertEqual(peer.verbs(), ["HELLO", "WELCOME", "ERROR"], line)
            self.assertTrue(peer.lost)

    def test_unknown_stream_refused(self) -> None:
        """Subscribing to a stream the master does not have is a protocol error."""
        self.start_master()
        peer = self.raw_client()
        peer.authenticate()
        peer.send("SUBSCRIBE nosuchstream")
        self.network.pump()
        self.assertEqual(peer.verbs(), ["HELLO", "WELCOME", "ERROR"])
        self.assertIn("unknown stream", peer.lines[2])

    def test_overlong_line_and_bad_utf8_refused(self) -> None:
        """A line over the limit (even without its newline yet) or invalid UTF-8 gets ERROR and a disconnect."""
        self.start_master(settings=ConnectionSettings(max_line_bytes=2048, max_queued_bytes=4096))
        peer = self.raw_client()
        assert peer.transport is not None
        peer.transport.write(b"A" * 3000)
        self.network.pump()
        self.assertEqual(peer.verbs(), ["HELLO", "ERROR"])
        self.assertIn("longer than 2048", peer.lines[1])
        peer = self.raw_client()
        assert peer.transport is not None
        peer.transport.write(b"AUTH \xff\xfe\n")
        self.network.pump()
        self.assertEqual(peer.lines[1], "ERROR line is not UTF-8")

    def test_same_worker_name_replaces_old_connection(self) -> None:
        """A worker reconnecting under its name replaces the connection the master still holds."""
        master = self.start_master()
        first = self.raw_client()
        first.authenticate("w")
        second = self.raw_client()
        second.authenticate("w")
        self.network.pump()
        self.assertTrue(first.lost)
        self.assertIn("replaced", first.lines[-1])
        self.assertFalse(second.lost)
        self.assertEqual(list(master.server.connections), ["w"])


class HeartbeatTests(ProtocolTestCase):
    def test_pings_keep_a_live_connection_up(self) -> None:
        """With traffic flowing, PINGs both ways keep the connection up indefinitely."""
        master = self.start_master()
        worker = self.start_worker()
        self.advance(120)
        self.assertTrue(worker.client.connected)
        self.assertEqual(list(master.server.connections), ["worker1"])

    def test_silent_peer_is_dropped(self) -> None:
        """No PING (or anything) for ping_timeout seconds: both sides drop the connection."""
        master = self.start_master()
        worker = self.start_worker()
        conn = self.server_conn(master)
        timeouts = _sample(metrics.HEARTBEAT_TIMEOUTS)
        for _ in range(6):  # 30s with the network cut: nothing delivered
            self.reactor.advance(5)
        self.assertTrue(conn.closing)
        self.assertGreaterEqual(_sample(metrics.HEARTBEAT_TIMEOUTS), timeouts + 1)
        self.network.pump()
        self.assertEqual(master.server.connections, {})
        self.assertFalse(worker.client.connected)

    def test_handshake_timeout(self) -> None:
        """A peer that connects but never authenticates is dropped after handshake_timeout."""
        self.start_master()
        peer = self.raw_client()
        self.reactor.advance(9)
        self.network.pump()
        self.assertFalse(peer.lost)
        self.reactor.advance(2)
        self.network.pump()
        self.assertEqual(peer.lines[-1], "ERROR handshake timed out")
        self.assertTrue(peer.lost)


class FlowControlTests(ProtocolTestCase):
    def test_slow_consumer_disconnected_and_catches_up(self) -> None:
        """A worker whose transport stays paused past max_queued_bytes is dropped, then catches up from the log."""
        settings = ConnectionSettings(max_line_bytes=1024, max_queued_bytes=4096)
        master = self.start_master(settings=settings)
        worker = self.start_worker(settings=ClientSettings(connection=settings))
        conn = self.server_conn(master)
        drops = _sample(metrics.SLOW_CONSUMER_DISCONNECTS)
        conn.pauseProducing()  # what the TCP transport does when the peer stops reading
        for i in range(10):
            self.log.write("!r", f"row{i}-" + "x" * 900)
            master.publisher.notify("notes")
            if conn.closing:
                break
            self.assertLessEqual(conn.queued_bytes, 4096 + 1024)
        self.assertTrue(conn.closing)
        self.assertEqual(_sample(metrics.SLOW_CONSUMER_DISCONNECTS), drops + 1)
        self.network.pump()
        self.assertFalse(worker.client.connected)
        self.assertEqual(worker.invalidated, [])  # nothing queued while paused was delivered

        self.log.write("!r", "after")
        master.publisher.notify("notes")
        self.advance(2)  # backoff, reconnect, SUBSCRIBE from 0 ... catch-up
        self.assertTrue(worker.client.connected)
        self.assertEqual(worker.dispatcher.position("notes"), self.log.committed)
        self.assertEqual(len(worker.texts()), self.log.committed)
        self.assertEqual(worker.texts()[-1], "after")

    def test_paused_then_resumed_delivers_in_order(self) -> None:
        """Lines queued while the transport is paused go out in order on resume."""
        master = self.start_master()
        worker = self.start_worker()
        conn = self.server_conn(master)
        conn.pauseProducing()
        for text in "abc":
            self.log.write("!r", text)
            master.publisher.notify("notes")
        self.network.pump()
        self.assertEqual(worker.texts(), [])
        conn.resumeProducing()
        self.network.pump()
        self.assertEqual(worker.texts(), ["a", "b", "c"])


class ReconnectTests(ProtocolTestCase):
    def test_backoff_grows_exponentially_and_resets_after_welcome(self) -> None:
        """Refused connects are retried after 0.25, 0.5, 1, 2... s (jitter factor 0.5 here); WELCOME resets it."""
        worker = self.start_worker()  # nothing listening yet
        self.assertEqual(self.network.attempts, 1)
        expected = [0.25, 0.5, 1.0, 2.0, 4.0]
        for delay in expected:
            self.reactor.advance(delay - 0.01)
            attempts = self.network.attempts
            self.reactor.advance(0.01)
            self.assertEqual(self.network.attempts, attempts + 1, delay)
        self.start_master()
        self.advance(8.0, step=0.5)
        self.assertTrue(worker.client.connected)
        attempts = self.network.attempts
        self.network.last_pump().serverIO.loseConnection()
        self.network.pump()
        self.assertFalse(worker.client.connected)
        self.reactor.advance(0.25)  # back to the initial delay
        self.network.pump()
        self.assertEqual(self.network.attempts, attempts + 1)
        self.assertTrue(worker.client.connected)

    def test_stop_closes_and_stops_retrying(self) -> None:
        """client.stop() closes the connection and no further attempts are made."""
        master = self.start_master()
        worker = self.start_worker()
        worker.client.stop()
        self.network.pump()
        attempts = self.network.attempts
        self.advance(60)
        self.assertEqual(self.network.attempts, attempts)
        self.assertEqual(master.server.connections, {})
