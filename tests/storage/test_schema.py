"""The migration runner: fresh create, in-place upgrade, refusal of newer or foreign databases."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from matrixd.storage.database import Database
from matrixd.storage.schema import (
    DEFAULT_LAYOUT,
    SCHEMA_VERSION,
    SchemaError,
    SchemaLayout,
    SchemaOutdatedError,
    SchemaTooNewError,
    prepare_database,
    split_statements,
)
from matrixd.testing.database import make_test_database

EXPECTED_TABLES = {
    "rooms", "events", "event_json", "event_edges", "event_auth", "redactions",
    "event_forward_extremities", "event_backward_extremities", "state_groups",
    "state_group_edges", "state_groups_state", "event_to_state_groups",
    "current_state_events", "current_state_delta_stream", "room_memberships",
    "local_current_membership", "schema_version", "applied_schema_deltas",
}


async def _tables(db: Database) -> set[str]:
    if db.engine.name == "postgres":
        rows = await db.execute(
            "t", "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    else:
        rows = await db.execute("t", "SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r[0] for r in rows}


async def _version(db: Database) -> int:
    rows = await db.execute("v", "SELECT version FROM schema_version")
    return int(rows[0][0])


class SchemaTestCase(TestCase):
    async def setUp(self) -> None:
        self.db = await make_test_database(self, reactor, prepare=False)
        self.dir = Path(self.mktemp())
        (self.dir / "full").mkdir(parents=True)
        (self.dir / "full" / "10_things.sql").write_text(
            "-- a comment; with a semicolon\n"
            "CREATE TABLE things (id BIGINT NOT NULL PRIMARY KEY, name TEXT NOT NULL);\n"
            "CREATE INDEX things_name ON things (name);\n"
        )

    def _add_delta(self, version: int, name: str, sql: str) -> None:
        d = self.dir / "delta" / str(version)
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(sql)

    def _layout(self, version: int, full_version: int = 1) -> SchemaLayout:
        return SchemaLayout(self.dir, version, full_version)

    async def test_fresh_database_gets_full_schema(self) -> None:
        """prepare_database on an empty database creates every table and records SCHEMA_VERSION."""
        await prepare_database(self.db)
        self.assertTrue(EXPECTED_TABLES <= await _tables(self.db), await _tables(self.db))
        self.assertEqual(await _version(self.db), SCHEMA_VERSION)
        # Running it again is a no-op.
        await prepare_database(self.db)
        self.assertEqual(await _version(self.db), SCHEMA_VERSION)

    async def test_upgrade_applies_delta_in_place(self) -> None:
        """An old database is upgraded by the newer deltas, keeping its data, and remembers them."""
        await prepare_database(self.db, self._layout(1))
        await self.db.execute("ins", "INSERT INTO things (id, name) VALUES (1, 'one')")

        self._add_delta(2, "10_add_colour.sql", "ALTER TABLE things ADD COLUMN colour TEXT;\n")
        self._add_delta(2, "20_engine.sqlite.sql", "CREATE TABLE only_sqlite (x INTEGER);\n")
        self._add_delta(2, "20_engine.postgres.sql", "CREATE TABLE only_postgres (x INTEGER);\n")
        await prepare_database(self.db, self._layout(2))

        self.assertEqual(await _version(self.db), 2)
        rows = await self.db.execute("sel", "SELECT id, name, colour FROM things")
        self.assertEqual(rows, [(1, "one", None)])
        tables = await _tables(self.db)
        self.assertIn(f"only_{self.db.engine.name}", tables)
        self.assertNotIn("only_postgres" if self.db.engine.name == "sqlite" else "only_sqlite", tables)
        applied = await self.db.execute("a", "SELECT version, file FROM applied_schema_deltas ORDER BY file")
        self.assertEqual(applied, [(2, "10_add_colour.sql"), (2, f"20_engine.{self.db.engine.name}.sql")])

        # A delta added later to the version the database is already at still runs once.
        self._add_delta(2, "30_more.sql", "CREATE TABLE more_things (id BIGINT);\n")
        await prepare_database(self.db, self._layout(2))
        await prepare_database(self.db, self._layout(2))
        self.assertIn("more_things", await _tables(self.db))

    async def test_fresh_database_applies_deltas_beyond_full(self) -> None:
        """A fresh database gets full/ then only the deltas newer than FULL_SCHEMA_VERSION."""
        # Version 1's delta is folded into full/ already: it must not run (it would fail).
        self._add_delta(1, "10_old.sql", "ALTER TABLE things ADD COLUMN name TEXT;\n")
        self._add_delta(2, "10_new.sql", "ALTER TABLE things ADD COLUMN colour TEXT;\n")
        await prepare_database(self.db, self._layout(2, full_version=1))
        self.assertEqual(await _version(self.db), 2)
        await self.db.execute("ins", "INSERT INTO things (id, name, colour) VALUES (1, 'a', 'red')")
        applied = await self.db.execute("a", "SELECT version, file FROM applied_schema_deltas ORDER BY version")
        self.assertEqual(applied, [(1, "10_old.sql"), (2, "10_new.sql")])

    async def test_refuses_newer_database(self) -> None:
        """Code that knows version 1 refuses a database at version 2 with a clear error."""
        self._add_delta(2, "10_x.sql", "CREATE TABLE x (id INTEGER);\n")
        await prepare_database(self.db, self._layout(2))
        (self.dir / "delta" / "2" / "10_x.sql").unlink()
        (self.dir / "delta" / "2").rmdir()
        with self.assertRaises(SchemaTooNewError) as cm:
            await prepare_database(self.db, self._layout(1))
        self.assertIn("newer", str(cm.exception))
        self.assertEqual(await _version(self.db), 2)

    async def test_worker_refuses_to_migrate(self) -> None:
        """With allow_upgrade=False an empty or outdated database is refused, a current one accepted."""
        with self.assertRaises(SchemaOutdatedError):
            await prepare_database(self.db, self._layout(1), allow_upgrade=False)
        await prepare_database(self.db, self._layout(1))
        await prepare_database(self.db, self._layout(1), allow_upgrade=False)
        self._add_delta(2, "10_x.sql", "CREATE TABLE x (id INTEGER);\n")
        with self.assertRaises(SchemaOutdatedError):
            await prepare_database(self.db, self._layout(2), allow_upgrade=False)
        self.assertEqual(await _version(self.db), 1)

    async def test_failed_delta_leaves_database_untouched(self) -> None:
        """A broken delta raises SchemaError and rolls back the whole upgrade."""
        await prepare_database(self.db, self._layout(1))
        self._add_delta(2, "10_ok.sql", "CREATE TABLE fine (id INTEGER);\n")
        self._add_delta(2, "20_bad.sql", "CREATE TABLE broken (;\n")
        with self.assertRaises(SchemaError) as cm:
            await prepare_database(self.db, self._layout(2))
        self.assertIn("20_bad.sql", str(cm.exception))
        self.assertEqual(await _version(self.db), 1)
        self.assertNotIn("fine", await _tables(self.db))

    async def test_refuses_foreign_database(self) -> None:
        """A database with tables but no schema_version (not ours) is never touched."""
        await self.db.execute("foreign", "CREATE TABLE users (name TEXT)")
        with self.assertRaises(SchemaError) as cm:
            await prepare_database(self.db, self._layout(1))
        self.assertIn("did not create", str(cm.exception))

    async def test_delta_beyond_code_version_is_a_programming_error(self) -> None:
        """A delta directory newer than the code's SCHEMA_VERSION is reported before touching the DB."""
        self._add_delta(3, "10_x.sql", "CREATE TABLE x (id INTEGER);\n")
        with self.assertRaises(SchemaError) as cm:
            await prepare_database(self.db, self._layout(2))
        self.assertIn("SCHEMA_VERSION", str(cm.exception))
        self.assertEqual(await _tables(self.db), set())

    async def test_concurrent_migrations(self) -> None:
        """Two processes preparing the same empty database at once both succeed; it is created once."""
        from twisted.internet import defer

        other = Database(self.db.config, reactor)
        self.addCleanup(other.close)
        await defer.gatherResults(
            [defer.ensureDeferred(prepare_database(d)) for d in (self.db, other)], consumeErrors=True
        )
        self.assertEqual(await _version(other), SCHEMA_VERSION)
        rows = await self.db.execute("n", "SELECT COUNT(*) FROM schema_version")
        self.assertEqual(rows, [(1,)])

    def test_split_statements(self) -> None:
        """Statements split on `;` outside comments and quotes; trailing comments are ignored."""
        text = "-- c; c\nCREATE TABLE a (x TEXT DEFAULT ';');\n\nINSERT INTO a VALUES ('b;c');\n-- end\n"
        self.assertEqual(
            split_statements(text),
            ["-- c; c\nCREATE TABLE a (x TEXT DEFAULT ';');", "INSERT INTO a VALUES ('b;c');"],
        )
        with self.assertRaises(SchemaError):
            split_statements("CREATE TABLE a (x TEXT)\n")

    def test_shipped_layout_is_consistent(self) -> None:
        """The shipped schema/ has full files for every area and no delta beyond SCHEMA_VERSION."""
        self.assertTrue(DEFAULT_LAYOUT.full_files("sqlite"))
        self.assertTrue(all(v <= SCHEMA_VERSION for v in DEFAULT_LAYOUT.delta_versions()))
        pg = {p.name for p in DEFAULT_LAYOUT.full_files("postgres")}
        self.assertIn("30_state.postgres.sql", pg)
        self.assertNotIn("30_state.postgres.sql", {p.name for p in DEFAULT_LAYOUT.full_files("sqlite")})
