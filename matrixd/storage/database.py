"""One Database for every store: a connection pool on a thread pool, transactions with retries.

Stores never touch connections: they hand a function to
:meth:`Database.run_interaction`, which runs it in a transaction on a pool
thread (the reactor never blocks on SQL), commits, and retries the whole
function on transient conflicts (PostgreSQL serialization failures and
deadlocks, SQLite "database is locked").  Because of the retries a transaction
function must have no side effects outside the database; effects that should
follow a successful commit (cache invalidation, notifying streams) are
registered with :meth:`Cursor.call_after` and run on the reactor thread after
the commit, in registration order.

SQL is written once with ``?`` placeholders; the engine converts it.
"""

from __future__ import annotations

import itertools

import logging
import random
import threading
import time
from typing import (
    Any,
    Callable,
    Collection,
    Concatenate,
    Iterable,
    Iterator,
    Mapping,
    Optional,
    ParamSpec,
    Sequence,
    TypeVar,
    cast,
)

from twisted.internet import defer, task, threads
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.python.threadpool import ThreadPool

from matrixd.storage import sql
from matrixd.storage.engines import BaseEngine, Sqlite3Engine, create_engine
from matrixd.storage.metrics import observe_schedule, observe_txn
from matrixd.storage.wal_checkpoint import SAFETY_NET_PAGES, WalCheckpointer

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
Row = tuple[Any, ...]
#: ``(desc, seconds spent on the DB thread, whether this attempt was a retry)``
TxnMetricsCallback = Callable[[str, float, bool], None]

MAX_TXN_RETRIES = 5
RETRY_BASE_DELAY = 0.05
RETRY_MAX_DELAY = 2.0
SLOW_TXN_SECONDS = 1.0


class DatabaseClosedError(RuntimeError):
    """A transaction was requested after :meth:`Database.close`."""


class Cursor:
    """The cursor a transaction function receives: ``?`` SQL, batch helpers, post-commit hooks."""

    __slots__ = ("_cur", "engine", "desc", "_after")

    def __init__(self, cur: Any, engine: BaseEngine, desc: str) -> None:
        self._cur = cur
        self.engine = engine
        self.desc = desc
        self._after: list[tuple[Callable[..., object], tuple[Any, ...], dict[str, Any]]] = []

    # -- statements ---------------------------------------------------------------

    def execute(self, sql_text: str, args: Sequence[Any] = ()) -> None:
        self._cur.execute(self.engine.convert_sql(sql_text), tuple(args))

    def execute_raw(self, sql_text: str) -> None:
        """Run SQL verbatim with no parameters (schema files: no placeholder conversion)."""
        self._cur.execute(sql_text)

    def executemany(self, sql_text: str, args_seq: Iterable[Sequence[Any]]) -> None:
        """Run one statement for many argument tuples (the driver's own executemany)."""
        self._cur.executemany(self.engine.convert_sql(sql_text), [tuple(a) for a in args_seq])

    def execute_batch(self, sql_text: str, args_seq: Iterable[Sequence[Any]]) -> None:
        """Like :meth:`executemany` but fast on PostgreSQL (statements sent in pages).

        ``args_seq`` is consumed as the rows are sent: a generator keeps only a
        page of rows alive, not thousands of events' JSON at once.
        """
        args = iter(args_seq)
        first = next(args, None)
        if first is None:
            return
        rows = itertools.chain((tuple(first),), (tuple(a) for a in args))
        if self.engine.name == "postgres":
            from psycopg2.extras import execute_batch

            execute_batch(self._cur, self.engine.convert_sql(sql_text), rows, page_size=200)
        else:
            self._cur.executemany(self.engine.convert_sql(sql_text), rows)

    # -- results ------------------------------------------------------------------

    def fetchone(self) -> Optional[Row]:
        row = self._cur.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self) -> list[Row]:
        return [tuple(r) for r in self._cur.fetchall()]

    def __iter__(self) -> Iterator[Row]:
        for row in self._cur:
            yield tuple(row)

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)

    @property
    def description(self) -> Any:
        return self._cur.description

    # -- post-commit effects ----------------------------------------------------

    def call_after(self, callback: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """Run ``callback(*args, **kwargs)`` on the reactor thread once this transaction commits.

        Nothing runs if the transaction rolls back; a retried attempt starts
        with an empty list.
        """
        self._after.append((callback, args, kwargs))

    def close(self) -> None:
        self._cur.close()


class _ConnectionPool:
    """One connection per pool thread, opened lazily, replaced when it breaks."""

    def __init__(self, engine: BaseEngine, reactor: IReactorFromThreads) -> None:
        self._engine = engine
        self._reactor = reactor
        self._threadpool = ThreadPool(
            minthreads=engine.min_connections, maxthreads=engine.max_connections, name=f"db-{engine.name}"
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._threadpool.start()

    def run(self, fn: Callable[..., R], *args: Any) -> "defer.Deferred[R]":
        return threads.deferToThreadPool(self._reactor, self._threadpool, self._with_connection, fn, *args)

    def _with_connection(self, fn: Callable[..., R], *args: Any) -> R:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._engine.connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        try:
            return fn(conn, *args)
        except BaseException:
            if self._engine.is_connection_broken(conn):
                logger.warning("database connection to %s broke; reconnecting on next use", self._engine.describe())
                self._local.conn = None
                with self._lock:
                    if conn in self._connections:
                        self._connections.remove(conn)
            raise

    def close(self) -> None:
        """Stop the threads (waiting for running transactions) and close every connection."""
        self._threadpool.stop()
        with self._lock:
            conns, self._connections = self._connections, []
        for conn in conns:
            try:
                conn.close()
            except Exception:  # pragma: no cover - best effort at shutdown
                logger.exception("error closing database connection")


class _InlinePool(_ConnectionPool):
    """Runs every transaction synchronously on the calling thread, on one connection.

    For in-process tests on a memory reactor: a request's database work then
    completes before ``make_request`` returns, with no real threads or waiting.
    """

    def __init__(self, engine: BaseEngine, reactor: IReactorFromThreads) -> None:
        self._engine = engine
        self._reactor = reactor
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections = []

    def run(self, fn: Callable[..., R], *args: Any) -> "defer.Deferred[R]":
        try:
            return defer.succeed(self._with_connection(fn, *args))
        except BaseException:
            return defer.fail()

    def close(self) -> None:
        with self._lock:
            conns, self._connections = self._connections, []
        for conn in conns:
            conn.close()


class Database:
    """The database of one homeserver process.

    Args:
        engine_config: the ``database`` section of homeserver.yaml, e.g.
            ``{"name": "sqlite3", "args": {"database": "homeserver.db"}}``.
        reactor: provides ``IReactorTime`` and ``IReactorFromThreads`` (the
            real reactor in production; storage tests use it too).
        metrics: called after every transaction attempt with
            ``(desc, seconds, retried)``; ``None`` records nothing.

    The pool's threads start here; call :meth:`close` at shutdown.
    """

    def __init__(
        self,
        engine_config: Mapping[str, Any],
        reactor: IReactorTime,
        *,
        metrics: Optional[TxnMetricsCallback] = observe_txn,
        max_retries: int = MAX_TXN_RETRIES,
        inline: bool = False,
    ) -> None:
        self.engine = create_engine(engine_config)
        #: The config this Database was built from (to open another pool on the same database).
        self.config: Mapping[str, Any] = dict(engine_config)
        self._reactor = reactor
        self._metrics = metrics
        self._max_retries = max_retries
        self._closed = False
        pool_class = _InlinePool if inline else _ConnectionPool
        self._checkpointer: Optional[WalCheckpointer] = None
        if isinstance(self.engine, Sqlite3Engine) and not self.engine.in_memory and not inline:
            # Before the pool's connection opens: it gets the checkpointer's safety-net threshold.
            self.engine.wal_autocheckpoint_pages = SAFETY_NET_PAGES
            self._checkpointer = WalCheckpointer(self.engine, reactor)
        self._pool = pool_class(self.engine, cast(IReactorFromThreads, reactor))
        logger.info("using database %s", self.engine.describe())

    @property
    def wal_checkpointer(self) -> Optional[WalCheckpointer]:
        """What checkpoints an SQLite file's write-ahead log (None: PostgreSQL, memory, inline)."""
        return self._checkpointer

    @property
    def name(self) -> str:
        """The engine name: "sqlite" or "postgres"."""
        return self.engine.name

    # -- transactions -------------------------------------------------------------

    async def run_interaction(
        self,
        desc: str,
        func: Callable[Concatenate[Cursor, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run ``func(cursor, *args, **kwargs)`` in one transaction on a pool thread.

        ``desc`` names the transaction in logs and metrics (keep it a constant,
        not per-call data).  The function is re-run from scratch after a
        serialization failure, deadlock or SQLite lock timeout, with jittered
        exponential backoff, up to ``max_retries`` times; any other exception
        rolls back and propagates.
        """
        attempt = 0
        while True:
            if self._closed:
                raise DatabaseClosedError(f"database closed; cannot run {desc!r}")
            try:
                outcome: tuple[R, list[tuple[Callable[..., object], tuple[Any, ...], dict[str, Any]]], bool] = (
                    await self._pool.run(self._run_txn, desc, attempt > 0, time.monotonic(), func, args, kwargs)
                )
                result, after, wrote = outcome
            except Exception as e:
                if attempt < self._max_retries and self.engine.is_retryable(e):
                    attempt += 1
                    delay = min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * (2 ** (attempt - 1)))
                    delay *= 0.5 + random.random() / 2
                    logger.info("[TXN %s] transient conflict (%s); retry %d in %.3fs", desc, e, attempt, delay)
                    await task.deferLater(self._reactor, delay, lambda: None)
                    continue
                raise
            if wrote and self._checkpointer is not None:
                self._checkpointer.wrote()
            for callback, cb_args, cb_kwargs in after:
                try:
                    callback(*cb_args, **cb_kwargs)
                except Exception:
                    # The commit happened; failing the caller now would make it
                    # believe the write did not.  Log loudly instead.
                    logger.exception("[TXN %s] post-commit callback %r failed", desc, callback)
            return result

    def _run_txn(
        self,
        conn: Any,
        desc: str,
        retried: bool,
        submitted: float,
        func: Callable[..., R],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[R, list[tuple[Callable[..., object], tuple[Any, ...], dict[str, Any]]], bool]:
        """The body of one attempt, on a pool thread (``submitted``: when it was queued).

        Returns the function's result, the post-commit callbacks and whether the transaction changed rows.
        """
        start = time.monotonic()
        if self._metrics is not None:
            observe_schedule(start - submitted)
        cursor = Cursor(conn.cursor(), self.engine, desc)
        changes_before = self.engine.total_changes(conn)
        try:
            self.engine.begin(conn)
            result = func(cursor, *args, **kwargs)
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except Exception:
                logger.warning("[TXN %s] rollback failed", desc, exc_info=True)
            raise
        finally:
            try:
                cursor.close()
            except Exception:
                pass
            duration = time.monotonic() - start
            if duration > SLOW_TXN_SECONDS:
                logger.warning("[TXN %s] took %.3fs", desc, duration)
            if self._metrics is not None:
                self._metrics(desc, duration, retried)
        return result, cursor._after, self.engine.total_changes(conn) != changes_before

    async def execute(self, desc: str, sql_text: str, *args: Any) -> list[Row]:
        """Run one statement in its own transaction and return all rows."""

        def _f(txn: Cursor) -> list[Row]:
            txn.execute(sql_text, args)
            return txn.fetchall() if txn.description is not None else []

        return await self.run_interaction(desc, _f)

    def close(self) -> None:
        """Stop the pool: waits for running transactions, then closes connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._pool.close()

    # -- simple helpers (one transaction each; see matrixd.storage.sql for _txn forms) --

    async def simple_insert(self, table: str, values: Mapping[str, Any], desc: str = "simple_insert") -> None:
        await self.run_interaction(desc, sql.simple_insert_txn, table, values)

    async def simple_insert_many(
        self, table: str, keys: Sequence[str], rows: Iterable[Sequence[Any]], desc: str = "simple_insert_many"
    ) -> None:
        await self.run_interaction(desc, sql.simple_insert_many_txn, table, keys, list(rows))

    async def simple_upsert(
        self,
        table: str,
        keyvalues: Mapping[str, Any],
        values: Mapping[str, Any],
        insertion_values: Optional[Mapping[str, Any]] = None,
        desc: str = "simple_upsert",
    ) -> None:
        await self.run_interaction(desc, sql.simple_upsert_txn, table, keyvalues, values, insertion_values)

    async def simple_select_one(
        self,
        table: str,
        keyvalues: Mapping[str, Any],
        retcols: Sequence[str],
        allow_none: bool = False,
        desc: str = "simple_select_one",
    ) -> Optional[dict[str, Any]]:
        return await self.run_interaction(desc, sql.simple_select_one_txn, table, keyvalues, retcols, allow_none)

    async def simple_select_one_onecol(
        self,
        table: str,
        keyvalues: Mapping[str, Any],
        retcol: str,
        allow_none: bool = False,
        desc: str = "simple_select_one_onecol",
    ) -> Any:
        return await self.run_interaction(
            desc, sql.simple_select_one_onecol_txn, table, keyvalues, retcol, allow_none
        )

    async def simple_select_onecol(
        self, table: str, keyvalues: Mapping[str, Any], retcol: str, desc: str = "simple_select_onecol"
    ) -> list[Any]:
        return await self.run_interaction(desc, sql.simple_select_onecol_txn, table, keyvalues, retcol)

    async def simple_select_list(
        self,
        table: str,
        keyvalues: Mapping[str, Any],
        retcols: Sequence[str],
        desc: str = "simple_select_list",
    ) -> list[dict[str, Any]]:
        return await self.run_interaction(desc, sql.simple_select_list_txn, table, keyvalues, retcols)

    async def simple_select_many(
        self,
        table: str,
        column: str,
        iterable: Collection[Any],
        retcols: Sequence[str],
        keyvalues: Optional[Mapping[str, Any]] = None,
        desc: str = "simple_select_many",
    ) -> list[dict[str, Any]]:
        return await self.run_interaction(
            desc, sql.simple_select_many_txn, table, column, list(iterable), retcols, keyvalues or {}
        )

    async def simple_update(
        self,
        table: str,
        keyvalues: Mapping[str, Any],
        updatevalues: Mapping[str, Any],
        desc: str = "simple_update",
    ) -> int:
        return await self.run_interaction(desc, sql.simple_update_txn, table, keyvalues, updatevalues)

    async def simple_delete(self, table: str, keyvalues: Mapping[str, Any], desc: str = "simple_delete") -> int:
        return await self.run_interaction(desc, sql.simple_delete_txn, table, keyvalues)
