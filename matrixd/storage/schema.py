"""The schema migration runner: create a fresh database or upgrade one in place.

Layout (see ``schema/README.md``)::

    schema/full/NN_<area>.sql               the whole schema as of FULL_SCHEMA_VERSION
    schema/delta/<version>/NN_<name>.sql     changes made in <version>

A file named ``x.sqlite.sql`` or ``x.postgres.sql`` runs only on that engine;
plain ``x.sql`` runs on both.  A fresh database gets the full files, then every
delta of a version above FULL_SCHEMA_VERSION.  An existing database at version
V gets the not-yet-applied deltas of versions V..SCHEMA_VERSION (deltas of the
version it is at may have been added since it was created; the
``applied_schema_deltas`` table remembers which ran).  Everything happens in
one transaction, so a failed upgrade leaves the database untouched.

A database newer than this code is refused: running old code against it could
corrupt it.  Workers pass ``allow_upgrade=False``: only the master migrates,
and a worker refuses to start against a database at another version.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import attrs

from matrixd.storage.database import Cursor, Database

logger = logging.getLogger(__name__)

#: The schema version this code reads and writes.  Bump it when adding schema/delta/<n>/.
SCHEMA_VERSION = 2
#: The version that schema/full/ creates; deltas up to this version are already in it.
FULL_SCHEMA_VERSION = 1
def _find_schema_dir() -> Path:
    """The repository's ``schema/`` (source checkout / editable install), else the packaged copy."""
    in_repo = Path(__file__).resolve().parent.parent.parent / "schema"
    if (in_repo / "full").is_dir():
        return in_repo
    return Path(__file__).resolve().parent.parent / "_schema"


SCHEMA_DIR = _find_schema_dir()

# Serialises concurrent migrations of one PostgreSQL database (arbitrary constant).
_PG_MIGRATION_LOCK = 0x6D61747278


class SchemaError(Exception):
    """The database cannot be used with this code (see the message for what to do)."""


class SchemaTooNewError(SchemaError):
    """The database was migrated by a newer matrixd than this one."""


class SchemaOutdatedError(SchemaError):
    """The database needs migrating and this process may not do it (a worker)."""


@attrs.frozen
class SchemaLayout:
    """Where the SQL lives and which versions it describes (tests point this elsewhere)."""

    directory: Path
    version: int
    full_version: int

    def full_files(self, engine: str) -> list[Path]:
        return _files_for_engine(self.directory / "full", engine)

    def delta_versions(self) -> list[int]:
        delta_dir = self.directory / "delta"
        if not delta_dir.is_dir():
            return []
        versions = []
        for entry in delta_dir.iterdir():
            if entry.is_dir():
                if not entry.name.isdigit():
                    raise SchemaError(f"schema delta directory {entry} is not a version number")
                versions.append(int(entry.name))
        return sorted(versions)

    def delta_files(self, version: int, engine: str) -> list[Path]:
        return _files_for_engine(self.directory / "delta" / str(version), engine)


DEFAULT_LAYOUT = SchemaLayout(SCHEMA_DIR, SCHEMA_VERSION, FULL_SCHEMA_VERSION)


def _files_for_engine(directory: Path, engine: str) -> list[Path]:
    if not directory.is_dir():
        return []
    chosen = []
    for path in directory.iterdir():
        if not path.is_file() or not path.name.endswith(".sql"):
            continue
        stem = path.name[: -len(".sql")]
        if stem.endswith(".sqlite") or stem.endswith(".postgres"):
            if stem.rsplit(".", 1)[1] != engine:
                continue
        chosen.append(path)
    return sorted(chosen, key=lambda p: p.name)


async def prepare_database(
    db: Database, layout: SchemaLayout = DEFAULT_LAYOUT, *, allow_upgrade: bool = True
) -> None:
    """Make ``db`` match ``layout.version``: create, upgrade, or refuse with a SchemaError."""
    beyond = [v for v in layout.delta_versions() if v > layout.version]
    if beyond:
        raise SchemaError(
            f"schema/delta has versions {beyond} beyond the code's schema version {layout.version}: "
            "bump SCHEMA_VERSION in matrixd/storage/schema.py"
        )
    if layout.full_version > layout.version:
        raise SchemaError(f"full schema version {layout.full_version} > schema version {layout.version}")
    await db.run_interaction("prepare_database", _prepare_txn, layout, allow_upgrade)


def _prepare_txn(txn: Cursor, layout: SchemaLayout, allow_upgrade: bool) -> None:
    engine = txn.engine.name
    if engine == "postgres":
        # READ COMMITTED (allowed as the first statement): after waiting for the
        # lock we must see what a concurrent migrator committed meanwhile, which a
        # REPEATABLE READ snapshot taken before the wait would hide.
        txn.execute_raw("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        txn.execute("SELECT pg_advisory_xact_lock(?)", (_PG_MIGRATION_LOCK,))
    tables = _existing_tables(txn)
    if "schema_version" not in tables:
        if tables:
            raise SchemaError(
                f"database has tables ({', '.join(sorted(tables)[:5])}, ...) but no matrixd schema_version: "
                "refusing to touch a database that matrixd did not create"
            )
        if not allow_upgrade:
            raise SchemaOutdatedError("database is empty: start the main process first so it creates the schema")
        _create_fresh(txn, layout, engine)
        return

    txn.execute("SELECT version FROM schema_version")
    row = txn.fetchone()
    if row is None:
        raise SchemaError("schema_version table is empty: the database is damaged")
    current = int(row[0])
    if current > layout.version:
        raise SchemaTooNewError(
            f"database schema version {current} is newer than this matrixd supports ({layout.version}): "
            "refusing to start. Run the newer matrixd that upgraded it, or restore a backup."
        )
    txn.execute("SELECT version, file FROM applied_schema_deltas")
    applied = {(int(v), f) for v, f in txn}
    pending = [
        (v, path)
        for v in layout.delta_versions()
        if current <= v <= layout.version
        for path in layout.delta_files(v, engine)
        if (v, path.name) not in applied
    ]
    if not pending and current == layout.version:
        return
    if not allow_upgrade:
        raise SchemaOutdatedError(
            f"database schema is at version {current} with {len(pending)} pending deltas; this process may "
            f"not migrate it (only the main process does): upgrade the main process first"
        )
    for version, path in pending:
        logger.info("applying schema delta %s/%s", version, path.name)
        _run_file(txn, path)
        txn.execute("INSERT INTO applied_schema_deltas (version, file) VALUES (?, ?)", (version, path.name))
    txn.execute("UPDATE schema_version SET version = ?", (layout.version,))
    logger.info("database schema upgraded from version %d to %d", current, layout.version)


def _create_fresh(txn: Cursor, layout: SchemaLayout, engine: str) -> None:
    logger.info("creating database schema at version %d", layout.version)
    txn.execute(
        "CREATE TABLE schema_version ("
        " lock CHAR(1) NOT NULL DEFAULT 'X' UNIQUE CHECK (lock = 'X'),"
        " version INTEGER NOT NULL)"
    )
    txn.execute(
        "CREATE TABLE applied_schema_deltas ("
        " version INTEGER NOT NULL, file TEXT NOT NULL, UNIQUE (version, file))"
    )
    for path in layout.full_files(engine):
        _run_file(txn, path)
    for version in layout.delta_versions():
        for path in layout.delta_files(version, engine):
            if version > layout.full_version:
                logger.info("applying schema delta %s/%s", version, path.name)
                _run_file(txn, path)
            txn.execute("INSERT INTO applied_schema_deltas (version, file) VALUES (?, ?)", (version, path.name))
    txn.execute("INSERT INTO schema_version (version) VALUES (?)", (layout.version,))


def _existing_tables(txn: Cursor) -> set[str]:
    if txn.engine.name == "postgres":
        txn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
    else:
        txn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    return {r[0] for r in txn}


def _run_file(txn: Cursor, path: Path) -> None:
    try:
        for statement in split_statements(path.read_text(encoding="utf-8")):
            txn.execute_raw(statement)
    except Exception as e:
        if txn.engine.is_retryable(e):
            raise
        raise SchemaError(f"error applying {path}: {e}") from e


def split_statements(text: str) -> list[str]:
    """Split a SQL file into statements (``;``-terminated, comments and quotes respected)."""
    statements = []
    buf: list[str] = []
    for line in text.splitlines(keepends=True):
        buf.append(line)
        candidate = "".join(buf)
        if sqlite3.complete_statement(candidate):
            statements.append(candidate.strip())
            buf = []
    rest = "".join(buf).strip()
    if rest and not all(ln.strip().startswith("--") or not ln.strip() for ln in rest.splitlines()):
        raise SchemaError(f"unterminated SQL statement (missing ';'?): {rest[:80]!r}")
    return [s for s in statements if _has_sql(s)]


def _has_sql(statement: str) -> bool:
    return any(ln.strip() and not ln.strip().startswith("--") for ln in statement.splitlines())
