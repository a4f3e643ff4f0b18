"""``update_database``: bring a database's schema up to date without starting
the server (e.g. before starting workers, or to check an upgrade in advance).

Applies the pending schema deltas in one transaction, exactly as the master
does at start-up; a database newer than this matrixd is refused untouched.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any, Optional, Sequence

from matrixd.cli._common import ImmediateReactor, fail, load_config_or_fail, run_sync
from matrixd.storage.database import Database
from matrixd.storage.schema import SCHEMA_VERSION, SchemaError, prepare_database


def _version(db: Database) -> Optional[int]:
    async def _read() -> Optional[int]:
        try:
            rows = await db.execute("schema_version", "SELECT version FROM schema_version")
        except Exception:
            return None
        return int(rows[0][0]) if rows else None

    return run_sync(_read())


def open_database(engine_config: dict[str, Any]) -> Database:
    try:
        return Database(engine_config, ImmediateReactor(), metrics=None, inline=True)  # type: ignore[arg-type]
    except Exception as e:
        fail(f"cannot open the database: {e}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="update_database",
        description="Apply pending schema changes to the database named in homeserver.yaml, then exit.",
        epilog="Example: update_database -c homeserver.yaml   (stop the server first)",
    )
    parser.add_argument("-c", "--config", required=True, help="homeserver.yaml naming the database")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each delta applied")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    config = load_config_or_fail(args.config)
    db = open_database(config.database.as_engine_config())
    try:
        before = _version(db)
        try:
            run_sync(prepare_database(db))
        except SchemaError as e:
            fail(str(e))
        except Exception as e:
            fail(f"cannot reach or update the database: {e}")
        after = _version(db)
    finally:
        db.close()
    if before is None:
        print(f"created a fresh schema at version {after}")
    elif before == after:
        print(f"schema is up to date (version {SCHEMA_VERSION})")
    else:
        print(f"schema upgraded from version {before} to {after}")


if __name__ == "__main__":
    main()
