"""The two database engines matrixd runs on: SQLite (single process) and PostgreSQL.

An engine knows how to open and configure a DB-API connection, how to translate
our ``?`` placeholders, how to begin a transaction and which errors are worth
retrying.  Everything else (SQL text, pooling, retries) is shared, so the SQL in
``schema/`` and the stores is written once and runs on both.

Isolation (PostgreSQL): every transaction runs at REPEATABLE READ.  A
transaction then reads one consistent snapshot across all its statements (sync
reads several streams and must not see half of a concurrent write), and a
concurrent update of the same row fails with a serialization error instead of
silently losing an update; :class:`matrixd.storage.database.Database` retries
those.  SQLite serialises writers anyway and its transactions are snapshots in
WAL mode, so it gives the same guarantees.
"""

from __future__ import annotations

import abc
import functools
import logging
import sqlite3
from typing import Any, Mapping, Optional

from matrixd.api.errors import ConfigError

logger = logging.getLogger(__name__)

# Features we rely on: UPSERT (3.24), window functions/CTEs (3.25), RENAME COLUMN (3.25).
MIN_SQLITE_VERSION = (3, 27, 0)
MIN_POSTGRES_VERSION = 110000  # server_version_num
SQLITE_BUSY_TIMEOUT_MS = 10_000
WAL_SIZE_LIMIT_BYTES = 32 * 1024 * 1024


class BaseEngine(abc.ABC):
    """What :class:`Database` needs from a DB-API driver."""

    #: "sqlite" or "postgres"; stores branch on this only where SQL really differs.
    name: str
    #: The exception classes raised for constraint violations (unique, FK, not null).
    integrity_errors: tuple[type[BaseException], ...]
    #: How many connections (and threads) the pool may open.
    min_connections: int
    max_connections: int

    @abc.abstractmethod
    def connect(self) -> Any:
        """Open and configure one connection (runs on a pool thread)."""

    @abc.abstractmethod
    def begin(self, conn: Any) -> None:
        """Start a transaction on ``conn`` (a no-op where the driver does it implicitly)."""

    @abc.abstractmethod
    def is_retryable(self, exc: BaseException) -> bool:
        """True for transient conflicts where re-running the transaction may succeed."""

    @abc.abstractmethod
    def is_connection_broken(self, conn: Any) -> bool:
        """True if ``conn`` can no longer be used and must be replaced."""

    @abc.abstractmethod
    def convert_sql(self, sql: str) -> str:
        """Turn our ``?`` placeholder SQL into the driver's paramstyle."""

    def total_changes(self, conn: Any) -> int:
        """Rows changed through ``conn`` since it opened, where the driver counts them (else 0)."""
        return 0

    def describe(self) -> str:
        """A log-safe description of where the database is (no passwords)."""
        return self.name


class Sqlite3Engine(BaseEngine):
    """SQLite via the stdlib driver: WAL, foreign keys, a busy timeout and one connection.

    SQLite allows one writer at a time, so the pool is a single connection on a
    single thread; that also makes ``:memory:`` databases work.
    """

    name = "sqlite"
    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, args: Mapping[str, Any]) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
            raise ConfigError(
                "database.name",
                f"SQLite {sqlite3.sqlite_version} is too old; matrixd needs "
                f"{'.'.join(map(str, MIN_SQLITE_VERSION))} or later",
            )
        database = args.get("database")
        if not isinstance(database, str) or not database:
            raise ConfigError("database.args.database", "must be a file path (or ':memory:')")
        unknown = set(args) - {"database", "cp_min", "cp_max"}
        if unknown:
            raise ConfigError("database.args", f"unknown sqlite3 options: {sorted(unknown)}")
        self.database = database
        self.in_memory = database == ":memory:" or database.startswith("file::memory:")
        self.min_connections = 1
        self.max_connections = 1
        #: The automatic checkpoint threshold in log pages, when checkpoints run elsewhere
        #: (``wal_checkpoint.WalCheckpointer``); None: SQLite's default.
        self.wal_autocheckpoint_pages: Optional[int] = None

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.database,
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            # Transactions are begun explicitly in begin(): the driver's implicit
            # BEGIN only precedes DML, which would leave our reads outside them.
            isolation_level=None,
            # The one connection is used from the pool thread and closed from the
            # reactor thread at shutdown; it is never used by two threads at once.
            check_same_thread=False,
            uri=self.database.startswith("file:"),
        )
        conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if not self.in_memory:
            conn.execute("PRAGMA journal_mode = WAL")
            # With WAL, NORMAL is durable against application crashes and only
            # risks the last commits on power loss, like PostgreSQL's async commit.
            conn.execute("PRAGMA synchronous = NORMAL")
            # After a burst the log is cut back to this size when it restarts (not kept at its peak).
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
            if self.wal_autocheckpoint_pages is not None:
                conn.execute(f"PRAGMA wal_autocheckpoint = {self.wal_autocheckpoint_pages}")
        return conn

    def total_changes(self, conn: Any) -> int:
        return int(conn.total_changes)

    def begin(self, conn: Any) -> None:
        conn.execute("BEGIN")

    def is_retryable(self, exc: BaseException) -> bool:
        if not isinstance(exc, sqlite3.OperationalError):
            return False
        msg = str(exc)
        return "database is locked" in msg or "database table is locked" in msg

    def is_connection_broken(self, conn: Any) -> bool:
        return False

    def convert_sql(self, sql: str) -> str:
        return sql

    def describe(self) -> str:
        return f"sqlite:{self.database}"


class PostgresEngine(BaseEngine):
    """PostgreSQL via psycopg2: REPEATABLE READ, autocommit off, UTF-8."""

    name = "postgres"

    def __init__(self, args: Mapping[str, Any]) -> None:
        import psycopg2
        import psycopg2.errors

        self._psycopg2 = psycopg2
        self._retryable = (psycopg2.errors.SerializationFailure, psycopg2.errors.DeadlockDetected)
        self.integrity_errors = (psycopg2.IntegrityError,)
        connect_args = dict(args)
        self.min_connections = _int_arg(connect_args.pop("cp_min", 5), "cp_min")
        self.max_connections = _int_arg(connect_args.pop("cp_max", 10), "cp_max")
        # Options of twisted.enterprise.adbapi that Synapse-shaped configs may carry.
        for ignored in ("cp_reconnect", "cp_noisy", "cp_openfun"):
            connect_args.pop(ignored, None)
        if self.min_connections < 1 or self.max_connections < self.min_connections:
            raise ConfigError("database.args.cp_max", "need 1 <= cp_min <= cp_max")
        self.connect_args = connect_args

    def connect(self) -> Any:
        import psycopg2.extensions

        conn = self._psycopg2.connect(**self.connect_args)
        conn.set_session(
            isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ,
            autocommit=False,
        )
        conn.set_client_encoding("UTF8")
        if conn.server_version < MIN_POSTGRES_VERSION:
            version = conn.server_version
            conn.close()
            raise ConfigError("database", f"PostgreSQL server version {version} is too old; need 11 or later")
        return conn

    def begin(self, conn: Any) -> None:
        # psycopg2 opens a transaction at the first statement when autocommit is off.
        return None

    def is_retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, self._retryable)

    def is_connection_broken(self, conn: Any) -> bool:
        return bool(conn.closed)

    def convert_sql(self, sql: str) -> str:
        return _to_pyformat(sql)

    def describe(self) -> str:
        safe = {k: v for k, v in self.connect_args.items() if k in ("host", "port", "dbname", "database", "user")}
        return "postgres:" + " ".join(f"{k}={v}" for k, v in sorted(safe.items()))


@functools.lru_cache(maxsize=4096)
def _to_pyformat(sql: str) -> str:
    """``?`` placeholders to psycopg2's ``%s`` (and literal ``%`` to ``%%``).

    Our SQL must therefore never contain a literal ``?`` (e.g. jsonb operators).
    """
    return sql.replace("%", "%%").replace("?", "%s")


def _int_arg(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"database.args.{key}", f"must be an integer, not {value!r}")
    return value


def create_engine(config: Mapping[str, Any]) -> BaseEngine:
    """Build the engine for a homeserver.yaml-shaped ``database`` section.

    ``{"name": "sqlite3", "args": {"database": path}}`` or
    ``{"name": "psycopg2", "args": {<psycopg2.connect kwargs>, "cp_min": n, "cp_max": m}}``.
    """
    name = config.get("name")
    args: Optional[Mapping[str, Any]] = config.get("args") or {}
    if not isinstance(args, Mapping):
        raise ConfigError("database.args", "must be a mapping")
    if name in ("sqlite3", "sqlite"):
        return Sqlite3Engine(args)
    if name in ("psycopg2", "postgres", "postgresql"):
        return PostgresEngine(args)
    raise ConfigError("database.name", f"unsupported database engine {name!r} (use 'sqlite3' or 'psycopg2')")
