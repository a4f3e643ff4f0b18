"""``matrixd_port_db``: copy a matrixd SQLite database into PostgreSQL.

Stop the server first.  The target gets the current schema, then every table
is copied in batches, in SQLite ``rowid`` order.  Each batch is inserted in
one target transaction together with the table's progress row (in
``port_db_progress`` on the target), so an interrupted port is resumed by
running the same command again: finished tables are skipped and a partly
copied table continues after its last copied row.  At the end the PostgreSQL
sequences are set past the copied ids (stream positions are derived from the
tables themselves), every table's row count is compared with the source, and
the progress table is dropped.

A target that already holds data and no port in progress is refused unless
``--force`` is given (which empties its tables first).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, Callable, Optional, Sequence

import yaml

from matrixd.cli._common import ImmediateReactor, fail, run_sync
from matrixd.storage.database import Cursor, Database
from matrixd.storage.schema import SCHEMA_DIR, SCHEMA_VERSION, SchemaError, prepare_database

PROGRESS_TABLE = "port_db_progress"
#: Bookkeeping tables the target's schema runner owns; checked, never copied.
SCHEMA_TABLES = ("schema_version", "applied_schema_deltas")
#: PostgreSQL sequences and the (table, column) whose ids they hand out.
SEQUENCES = {
    "state_group_id_seq": ("state_groups", "id"),
    "access_token_id_seq": ("access_tokens", "id"),
    "refresh_token_id_seq": ("refresh_tokens", "id"),
    "content_report_id_seq": ("content_reports", "id"),
}


class PortError(Exception):
    """The port cannot go on; the message tells the operator why and what to do."""


def _open(engine_config: dict[str, Any]) -> Database:
    return Database(engine_config, ImmediateReactor(), metrics=None, inline=True)  # type: ignore[arg-type]


def _rows(db: Database, sql_text: str, *args: Any) -> list[Any]:
    return run_sync(db.execute("port_db", sql_text, *args))


def source_tables(source: Database) -> list[str]:
    rows = _rows(source, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                         " ORDER BY name")
    return [r[0] for r in rows if r[0] not in SCHEMA_TABLES and r[0] != PROGRESS_TABLE]


def target_tables(target: Database) -> set[str]:
    rows = _rows(target, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    return {r[0] for r in rows}


def fk_order(target: Database, tables: list[str]) -> list[str]:
    """``tables`` with every table after the tables its foreign keys reference (copy order)."""
    rows = _rows(target,
                 "SELECT tc.table_name, ccu.table_name FROM information_schema.table_constraints tc"
                 " JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = tc.constraint_name"
                 " AND ccu.table_schema = tc.table_schema"
                 " WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema()")
    deps: dict[str, set[str]] = {t: set() for t in tables}
    for child, parent in rows:
        if child in deps and parent in deps and child != parent:
            deps[child].add(parent)
    ordered: list[str] = []
    placed: set[str] = set()
    while len(ordered) < len(tables):
        ready = sorted(t for t in tables if t not in placed and deps[t] <= placed)
        if not ready:
            raise PortError("the target's foreign keys form a cycle; cannot choose a copy order")
        ordered.extend(ready)
        placed.update(ready)
    return ordered


def _bool_columns(target: Database, table: str) -> set[str]:
    rows = _rows(target, "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                         " AND table_name = ? AND data_type = 'boolean'", table)
    return {r[0] for r in rows}


def _check_source(source: Database) -> None:
    try:
        rows = _rows(source, "SELECT version FROM schema_version")
    except Exception as e:
        raise PortError(f"the source is not a matrixd database ({e})") from None
    version = int(rows[0][0]) if rows else None
    if version != SCHEMA_VERSION:
        raise PortError(f"the source schema is at version {version}, this matrixd uses {SCHEMA_VERSION}: "
                        "run update_database on it first (with a config naming the SQLite file)")


def prepare_target(target: Database, tables: list[str], force: bool) -> bool:
    """Create the schema / progress table; True if resuming an interrupted port."""
    existing = target_tables(target)
    if PROGRESS_TABLE in existing:
        return True
    data_tables = [t for t in existing if t not in SCHEMA_TABLES]
    if data_tables:
        non_empty = [t for t in data_tables if _rows(target, f"SELECT 1 FROM {t} LIMIT 1")]
        if non_empty and not _only_seed_rows(target, non_empty):
            if not force:
                raise PortError(f"the target database already holds data (e.g. table {non_empty[0]}): "
                                "use an empty database, or --force to empty it")
            # One TRUNCATE of every table at once: foreign keys between them do not get in the way.
            _rows(target, f"TRUNCATE {', '.join(sorted(data_tables))}")
    try:
        run_sync(prepare_database(target))
    except SchemaError as e:
        raise PortError(f"the target schema: {e}") from None
    _rows(target, f"CREATE TABLE {PROGRESS_TABLE} (table_name TEXT NOT NULL PRIMARY KEY,"
                  " last_rowid BIGINT NOT NULL, rows_copied BIGINT NOT NULL, done BOOLEAN NOT NULL)")
    return False


def seeded_tables() -> set[str]:
    """Tables the full schema files insert rows into (a fresh schema is not "data")."""
    seeded: set[str] = set()
    for path in (SCHEMA_DIR / "full").glob("*.sql"):
        seeded.update(m.lower() for m in re.findall(r"INSERT\s+INTO\s+(\w+)", path.read_text(), re.IGNORECASE))
    return seeded


def _only_seed_rows(target: Database, tables: list[str]) -> bool:
    """Whether the non-empty tables are only those a fresh schema seeds, with their single row."""
    seeded = seeded_tables()
    return all(t in seeded and int(_rows(target, f"SELECT COUNT(*) FROM {t}")[0][0]) <= 1 for t in tables)


def copy_table(source: Database, target: Database, table: str, batch_size: int,
               report: Callable[[str], None]) -> int:
    """Copy one table (resuming after its recorded progress); returns the source row count."""
    total = int(_rows(source, f"SELECT COUNT(*) FROM {table}")[0][0])
    progress = _rows(target, f"SELECT last_rowid, rows_copied, done FROM {PROGRESS_TABLE} WHERE table_name = ?",
                     table)
    if progress and progress[0][2]:
        report(f"{table}: already copied ({int(progress[0][1])} rows)")
        return total
    if not progress:
        # First visit: clear what the fresh schema seeded, and record the start atomically.
        def _start(txn: Cursor) -> None:
            txn.execute(f"DELETE FROM {table}")
            txn.execute(f"INSERT INTO {PROGRESS_TABLE} (table_name, last_rowid, rows_copied, done)"
                        " VALUES (?, 0, 0, FALSE)", (table,))

        run_sync(target.run_interaction("port_start_table", _start))
        last_rowid, copied = 0, 0
    else:
        last_rowid, copied = int(progress[0][0]), int(progress[0][1])

    columns = [r[1] for r in _rows(source, f"PRAGMA table_info({table})")]
    bools = _bool_columns(target, table)
    bool_idx = [i for i, c in enumerate(columns) if c in bools]
    col_list = ", ".join(columns)
    insert = f"INSERT INTO {table} ({col_list}) VALUES ({', '.join('?' * len(columns))})"
    while True:
        batch = _rows(source, f"SELECT rowid, {col_list} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                      last_rowid, batch_size)
        if not batch:
            break
        values = []
        for row in batch:
            out = list(row[1:])
            for i in bool_idx:
                if out[i] is not None:
                    out[i] = bool(out[i])
            values.append(out)
        new_last = int(batch[-1][0])
        new_copied = copied + len(batch)

        def _write(txn: Cursor, values: list[list[Any]] = values, new_last: int = new_last,
                   new_copied: int = new_copied) -> None:
            txn.execute_batch(insert, values)
            txn.execute(f"UPDATE {PROGRESS_TABLE} SET last_rowid = ?, rows_copied = ? WHERE table_name = ?",
                        (new_last, new_copied, table))

        run_sync(target.run_interaction("port_copy_batch", _write))
        last_rowid, copied = new_last, new_copied
        if sys.stdout.isatty():
            sys.stdout.write(f"\r{table}: {copied}/{total} rows")
            sys.stdout.flush()
    _rows(target, f"UPDATE {PROGRESS_TABLE} SET done = TRUE WHERE table_name = ?", table)
    if sys.stdout.isatty():
        sys.stdout.write("\r")
    report(f"{table}: {copied}/{total} rows copied")
    return total


def set_sequences(target: Database) -> None:
    known = {r[0] for r in _rows(target, "SELECT sequence_name FROM information_schema.sequences"
                                         " WHERE sequence_schema = current_schema()")}
    unknown = sorted(known - set(SEQUENCES))
    if unknown:
        raise PortError(f"the target has sequences this tool does not know: {', '.join(unknown)} "
                        "(add them to SEQUENCES in matrixd/cli/port_db.py)")
    for seq, (table, column) in SEQUENCES.items():
        if seq not in known:
            continue
        top = _rows(target, f"SELECT MAX({column}) FROM {table}")[0][0]
        if top is None:
            _rows(target, "SELECT setval(?, 1, false)", seq)
        else:
            _rows(target, "SELECT setval(?, ?)", seq, int(top))


def verify_counts(source: Database, target: Database, tables: list[str]) -> list[str]:
    """Tables whose row counts differ (empty when the port is complete)."""
    bad = []
    for table in tables:
        src = int(_rows(source, f"SELECT COUNT(*) FROM {table}")[0][0])
        dst = int(_rows(target, f"SELECT COUNT(*) FROM {table}")[0][0])
        if src != dst:
            bad.append(f"{table} (source {src}, target {dst})")
    return bad


def port(source_cfg: dict[str, Any], target_cfg: dict[str, Any], *, force: bool = False, batch_size: int = 1000,
         report: Callable[[str], None] = print, stop_after: Optional[int] = None) -> None:
    """The whole port; ``stop_after`` (tests) stops after that many tables, as an interruption would."""
    source = _open(source_cfg)
    target = _open(target_cfg)
    try:
        if source.name != "sqlite" or target.name != "postgres":
            raise PortError("the source must be SQLite and the target PostgreSQL")
        _check_source(source)
        tables = source_tables(source)
        resuming = prepare_target(target, tables, force)
        report("resuming an interrupted port" if resuming else f"porting {len(tables)} tables")
        missing = [t for t in tables if t not in target_tables(target)]
        if missing:
            raise PortError(f"the target schema lacks tables {', '.join(missing)}: is this the same matrixd?")
        tables = fk_order(target, tables)
        for i, table in enumerate(tables):
            if stop_after is not None and i >= stop_after:
                return
            copy_table(source, target, table, batch_size, report)
        set_sequences(target)
        bad = verify_counts(source, target, tables)
        if bad:
            raise PortError("row counts differ after copying: " + "; ".join(bad))
        _rows(target, f"DROP TABLE {PROGRESS_TABLE}")
        report(f"done: {len(tables)} tables copied and verified")
    finally:
        source.close()
        target.close()


def _target_config(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror or e}")
    except yaml.YAMLError as e:
        fail(f"{path} is not valid YAML: {e}")
    db = raw.get("database") if isinstance(raw, dict) else None
    if not isinstance(db, dict) or db.get("name") not in ("psycopg2", "postgres", "postgresql"):
        fail(f"{path} must have a 'database' section with name: psycopg2 and its connection args")
    args = dict(db.get("args") or {})
    for key in ("cp_min", "cp_max"):
        args.pop(key, None)
    return {"name": "psycopg2", "args": args}


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="matrixd_port_db",
        description="Copy a matrixd SQLite database into an (empty) PostgreSQL database. Stop matrixd first.",
        epilog=("Example: matrixd_port_db --sqlite-database homeserver.db --postgres-config pg.yaml\n"
                "pg.yaml holds a homeserver.yaml-style 'database' section (name: psycopg2, args: ...). "
                "If the port is interrupted, run the same command again: it resumes."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sqlite-database", required=True, help="the SQLite database file to copy")
    parser.add_argument("--postgres-config", required=True, help="YAML file with the target 'database' section")
    parser.add_argument("--force", action="store_true", help="empty a target that already holds data")
    parser.add_argument("--batch-size", type=int, default=1000, help="rows per transaction (default 1000)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        fail("--batch-size must be at least 1")
    if not os.path.isfile(args.sqlite_database):
        fail(f"{args.sqlite_database} does not exist")
    target = _target_config(args.postgres_config)
    try:
        port({"name": "sqlite3", "args": {"database": args.sqlite_database}}, target, force=args.force,
             batch_size=args.batch_size)
    except PortError as e:
        fail(str(e))
    except Exception as e:  # connection refused, authentication failure, ...
        fail(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
