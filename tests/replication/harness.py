"""Test support: an in-memory network between replication clients and a server, and a toy stream.

:class:`FakeNetwork` plays TCP: ``connect(factory)`` is an
``IStreamClientEndpoint.connect`` that joins the client protocol to a fresh
protocol of the currently "listening" server factory with
``twisted.test.iosim`` transports; :meth:`FakeNetwork.pump` moves bytes both
ways until nothing is left.

:class:`NotesLog` is a stream whose "database" is a Python list shared by
master and worker (rows committed by :meth:`NotesLog.write`), so protocol
tests need no SQL.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import attrs
from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim

from matrixd.replication.client import ClientSettings, ReplicationClient
from matrixd.replication.dispatcher import StreamDispatcher
from matrixd.replication.protocol import ConnectionSettings
from matrixd.replication.publisher import StreamPublisher
from matrixd.replication.server import ReplicationServer, WorkerActivity
from matrixd.replication.streams import ReplicationStream, StreamPage, StreamRegistry, page_from_rows
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName
from matrixd.util.clock import Clock

SERVER_NAME = "test"
SECRET = "correct horse battery staple"


class FakeNetwork:
    """Connects clients to whichever server factory is listening; pumps bytes on demand."""

    def __init__(self, reactor: MemoryReactorClock) -> None:
        self.reactor = reactor
        self.server_factory: Optional[IProtocolFactory] = None
        self.pumps: list[iosim.IOPump] = []
        self.attempts = 0

    def connect(self, factory: IProtocolFactory) -> "defer.Deferred[Any]":
        self.attempts += 1
        if self.server_factory is None:
            return defer.fail(ConnectionRefusedError("nothing listening"))
        client = factory.buildProtocol(None)
        server = self.server_factory.buildProtocol(None)
        client_io = iosim.FakeTransport(client, isServer=False)
        server_io = iosim.FakeTransport(server, isServer=True)
        self.pumps.append(iosim.connect(server, server_io, client, client_io, greet=False, clock=self.reactor))
        return defer.succeed(client)

    def pump(self) -> None:
        """Deliver everything written, including disconnects, until the network is quiet."""
        for _ in range(10_000):
            moved = False
            for p in list(self.pumps):
                if p.pump(advanceClock=False):
                    moved = True
            self.pumps = [p for p in self.pumps if not (p.clientIO.disconnected and p.serverIO.disconnected)]
            if not moved:
                return
        raise AssertionError("network never went quiet")

    def last_pump(self) -> iosim.IOPump:
        return self.pumps[-1]


@attrs.frozen(slots=True)
class NoteRow:
    """A toy row: some text about a room."""

    room: str
    text: str


class NotesLog:
    """A stream "database" shared by master and worker: committed rows numbered from 1."""

    def __init__(self, name: str = "notes") -> None:
        self.name = name
        self.rows: list[tuple[int, NoteRow]] = []
        self.committed = 0
        self.fetches: list[tuple[int, int]] = []

    def write(self, room: str, *texts: str) -> int:
        """Commit one token carrying one row per text."""
        token = self.committed + 1
        for text in texts or ("x",):
            self.rows.append((token, NoteRow(room, text)))
        self.committed = token
        return token

    def skip(self) -> int:
        """Commit a token with no rows (an id used by a rolled-back transaction)."""
        self.committed += 1
        return self.committed

    async def get_updates(self, from_token: int, to_token: int, limit: int) -> StreamPage[NoteRow]:
        self.fetches.append((from_token, to_token))
        tokens: list[int] = []
        out: list[tuple[int, NoteRow]] = []
        for token, row in self.rows:
            if from_token < token <= to_token:
                if token not in tokens:
                    if len(tokens) == limit:
                        break
                    tokens.append(token)
                out.append((token, row))
        return page_from_rows(out, to_token, limit, len(tokens))

    def stream(
        self,
        *,
        writer: bool,
        invalidate: Optional[Callable[[Sequence[NoteRow]], None]] = None,
        in_memory: bool = False,
        reset: Optional[Callable[[], None]] = None,
        notifier_stream: Optional[StreamName] = StreamName.RECEIPTS,
    ) -> ReplicationStream[NoteRow]:
        return ReplicationStream(
            name=self.name, row_type=NoteRow, get_updates=self.get_updates,
            current_token=(lambda: self.committed) if writer else None,
            invalidate=invalidate or (lambda rows: None), wake_keys=lambda row: (row.room,),
            notifier_stream=notifier_stream, in_memory=in_memory, reset=reset,
        )


class Master:
    """A master's replication side over one or more NotesLogs."""

    def __init__(self, reactor: MemoryReactorClock, logs: Sequence[NotesLog], *, secret: str = SECRET,
                 settings: ConnectionSettings = ConnectionSettings(), epoch: Optional[str] = None,
                 in_memory: Sequence[str] = ()) -> None:
        self.clock = Clock(reactor)
        self.notifier = Notifier(self.clock)
        self.registry = StreamRegistry(
            [log.stream(writer=True, in_memory=log.name in in_memory) for log in logs]
        )
        self.dispatcher = StreamDispatcher(self.registry, self.notifier, self.clock)
        self.publisher = StreamPublisher(self.registry, self.dispatcher, self.clock,
                                         max_line_bytes=settings.max_line_bytes)
        self.activity = WorkerActivity()
        self.server = ReplicationServer(
            clock=self.clock, server_name=SERVER_NAME, secret=secret, publisher=self.publisher,
            receiver=self.activity, settings=settings, epoch=epoch,
        )


class Worker:
    """A worker's replication side over the same NotesLogs, recording what it invalidated."""

    def __init__(self, reactor: MemoryReactorClock, network: FakeNetwork, logs: Sequence[NotesLog], *,
                 name: str = "worker1", secret: str = SECRET, settings: ClientSettings = ClientSettings(),
                 in_memory: Sequence[str] = ()) -> None:
        self.clock = Clock(reactor)
        self.notifier = Notifier(self.clock)
        self.invalidated: list[tuple[str, NoteRow]] = []
        self.resets: list[str] = []
        self.wakes_seen: list[tuple[str, int]] = []
        streams = []
        for log in logs:
            def record(rows: Sequence[NoteRow], stream: str = log.name) -> None:
                # The wake must come after this: the notifier must not have seen the token yet.
                self.wakes_seen.append((stream, self.notifier.current_seq()))
                self.invalidated.extend((stream, r) for r in rows)

            streams.append(log.stream(
                writer=False, invalidate=record, in_memory=log.name in in_memory,
                reset=lambda stream=log.name: self.resets.append(stream),
            ))
        self.registry = StreamRegistry(streams)
        self.dispatcher = StreamDispatcher(self.registry, self.notifier, self.clock)
        self.client = ReplicationClient(
            clock=self.clock, connector=network.connect, server_name=SERVER_NAME, worker_name=name, secret=secret,
            dispatcher=self.dispatcher, streams=[log.name for log in logs], settings=settings,
            random_fraction=lambda: 0.0,
        )

    def texts(self, stream: str = "notes") -> list[str]:
        return [r.text for s, r in self.invalidated if s == stream]
