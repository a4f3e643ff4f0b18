"""Operator commands: hash_password, export_signing_key, update_database and the SQLite -> PostgreSQL port."""

from __future__ import annotations

import io
import itertools
import os
import sqlite3
from contextlib import redirect_stderr, redirect_stdout
from typing import Any, Callable

import bcrypt
import signedjson.key
from twisted.internet import defer
from twisted.trial import unittest

from matrixd.app.listeners import build_json_resource
from matrixd.app.master import build_master_components, build_servlet_groups
from matrixd.cli import export_signing_key, hash_password, port_db, update_database
from matrixd.config.root import parse_config_dict
from matrixd.crypto.keys import generate_signing_key
from matrixd.storage.database import Database
from matrixd.storage.schema import prepare_database
from matrixd.testing.database import _pg_admin, _pg_engine_config
from matrixd.testing.homeserver import TEST_CONFIG, TestHomeserver
from matrixd.testing.http import make_reactor, make_site
from matrixd.util.clock import Clock
from matrixd.storage.schema import SCHEMA_VERSION

V3 = "/_matrix/client/v3"
_counter = itertools.count(1)


def run_main(main: Callable[[list[str]], None], argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as e:
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


class SimpleScriptTests(unittest.TestCase):
    def write_config(self, extra: str = "") -> str:
        path = self.mktemp()
        db_path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(f"server_name: test\nbcrypt_rounds: 5\ndatabase:\n  name: sqlite3\n  args:\n"
                    f"    database: {db_path}\n{extra}")
        return path

    def test_hash_password(self) -> None:
        """hash_password prints a bcrypt hash with the config's rounds that verifies the password."""
        code, out, _ = run_main(hash_password.main, ["-c", self.write_config(), "-p", "s3cret"])
        self.assertEqual(code, 0)
        hashed = out.strip()
        self.assertTrue(hashed.startswith("$2b$05$"), hashed)
        self.assertTrue(bcrypt.checkpw(b"s3cret", hashed.encode()))

    def test_hash_password_errors(self) -> None:
        """A missing config or bad rounds exit 1 with a message, no traceback."""
        code, _, err = run_main(hash_password.main, ["-c", "/nonexistent.yaml", "-p", "x"])
        self.assertEqual(code, 1)
        self.assertIn("cannot read", err)
        code, _, err = run_main(hash_password.main, ["-r", "2", "-p", "x"])
        self.assertEqual((code, "between 4 and 31" in err), (1, True))

    def test_export_signing_key(self) -> None:
        """export_signing_key prints old_signing_keys entries with the public key and expiry."""
        key = generate_signing_key("abc")
        path = self.mktemp()
        with open(path, "w") as f:
            signedjson.key.write_signing_keys(f, [key])
        code, out, _ = run_main(export_signing_key.main, [path, "-x", "1234"])
        self.assertEqual(code, 0)
        public = signedjson.key.encode_verify_key_base64(key.verify_key)
        self.assertEqual(out.strip(), f'"ed25519:abc": {{ key: "{public}", expired_ts: 1234 }}')
        code, _, err = run_main(export_signing_key.main, [self.mktemp()])
        self.assertEqual(code, 1)
        self.assertIn("cannot read", err)

    def test_update_database(self) -> None:
        """update_database creates the schema of an empty database, then finds it up to date."""
        config = self.write_config()
        code, out, _ = run_main(update_database.main, ["-c", config])
        self.assertEqual((code, out.strip()), (0, f"created a fresh schema at version {SCHEMA_VERSION}"))
        code, out, _ = run_main(update_database.main, ["-c", config])
        self.assertEqual((code, out.strip()), (0, f"schema is up to date (version {SCHEMA_VERSION})"))

    def test_update_database_unreachable(self) -> None:
        """An unreachable PostgreSQL server is a clear error, not a traceback."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("server_name: test\ndatabase:\n  name: psycopg2\n  args:\n    host: 127.0.0.1\n"
                    "    port: 1\n    user: nobody\n    dbname: nothing\n")
        code, _, err = run_main(update_database.main, ["-c", path])
        self.assertEqual(code, 1)
        self.assertIn("error:", err)


def server_on(testcase: unittest.TestCase, engine_config: dict[str, Any]) -> TestHomeserver:
    """A full in-process server on a given database (inline transactions)."""
    parsed = parse_config_dict({"server_name": "test", **TEST_CONFIG,
                                "media_store_path": os.path.abspath(testcase.mktemp())})
    reactor = make_reactor()
    reactor.advance(1_700_000_000)
    db = Database(engine_config, reactor, inline=True)
    testcase.addCleanup(db.close)
    testcase.successResultOf(defer.ensureDeferred(prepare_database(db)))
    clock = Clock(reactor)
    components = testcase.successResultOf(defer.ensureDeferred(
        build_master_components(parsed, reactor, clock, db, generate_signing_key("k"))))
    groups = build_servlet_groups(parsed, components)
    site = make_site(reactor, build_json_resource(sorted(groups), groups))
    return TestHomeserver(reactor, parsed, components, site, testcase)


class PortDbTests(unittest.TestCase):
    def setUp(self) -> None:
        self.sqlite_path = os.path.abspath(self.mktemp())
        source = server_on(self, {"name": "sqlite3", "args": {"database": self.sqlite_path}})
        self.alice = source.register_user("alice", "alicepw-123")[0]
        _, tok = source.register_user("bob", "bobpw-1234")
        ch = source.request("POST", f"{V3}/createRoom", {"name": "Ported", "preset": "public_chat"},
                            access_token=tok)
        self.room_id = ch.json_body["room_id"]
        for i in range(7):
            ch = source.request("PUT", f"{V3}/rooms/{self.room_id}/send/m.room.message/t{i}",
                                {"msgtype": "m.text", "body": f"m{i}"}, access_token=tok)
            assert ch.code == 200, ch.json_body
        source.components.db.close()
        self.dbname = f"matrixd_test_{os.getpid()}_port{next(_counter)}"
        _pg_admin(f'CREATE DATABASE "{self.dbname}" ENCODING \'UTF8\' LC_COLLATE \'C\' LC_CTYPE \'C\' '
                  "TEMPLATE template0")
        self.addCleanup(_pg_admin, f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        self.target = _pg_engine_config(self.dbname)
        self.lines: list[str] = []

    def source_cfg(self) -> dict[str, Any]:
        return {"name": "sqlite3", "args": {"database": self.sqlite_path}}

    def test_port_then_serve(self) -> None:
        """A ported database serves logins, history and new writes (sequences and streams continue)."""
        port_db.port(self.source_cfg(), self.target, batch_size=3, report=self.lines.append)
        self.assertIn("done:", self.lines[-1])
        self.assertTrue(any(line.startswith("events: ") for line in self.lines), self.lines)
        hs = server_on(self, self.target)
        ch = hs.request("POST", f"{V3}/login", {"type": "m.login.password",
                                                 "identifier": {"type": "m.id.user", "user": "bob"},
                                                 "password": "bobpw-1234"})
        self.assertEqual(ch.code, 200, ch.json_body)
        tok = ch.json_body["access_token"]
        ch = hs.request("GET", f"{V3}/rooms/{self.room_id}/messages?dir=b&limit=20", access_token=tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        bodies = [e["content"]["body"] for e in ch.json_body["chunk"] if e["type"] == "m.room.message"]
        self.assertEqual(bodies, [f"m{i}" for i in reversed(range(7))])
        ch = hs.request("PUT", f"{V3}/rooms/{self.room_id}/state/m.room.topic/", {"topic": "after the port"},
                        access_token=tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        ch = hs.request("POST", f"{V3}/createRoom", {"name": "New"}, access_token=tok)
        self.assertEqual(ch.code, 200, ch.json_body)

    def test_resume_after_interruption(self) -> None:
        """An interrupted port resumes without --force and finishes with matching counts."""
        port_db.port(self.source_cfg(), self.target, batch_size=2, report=self.lines.append, stop_after=5)
        self.lines.clear()
        port_db.port(self.source_cfg(), self.target, batch_size=2, report=self.lines.append)
        self.assertEqual(self.lines[0], "resuming an interrupted port")
        self.assertTrue(any("already copied" in line for line in self.lines), self.lines)
        self.assertIn("done:", self.lines[-1])
        src = sqlite3.connect(self.sqlite_path)
        try:
            expected = src.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        finally:
            src.close()
        hs = server_on(self, self.target)
        rows = hs.run(hs.components.db.execute("count", "SELECT COUNT(*) FROM events"))
        self.assertEqual(int(rows[0][0]), expected)

    def test_refuses_non_empty_target(self) -> None:
        """A finished port's target is refused the second time unless --force."""
        port_db.port(self.source_cfg(), self.target, report=self.lines.append)
        with self.assertRaises(port_db.PortError) as cm:
            port_db.port(self.source_cfg(), self.target, report=self.lines.append)
        self.assertIn("--force", str(cm.exception))
        port_db.port(self.source_cfg(), self.target, report=self.lines.append, force=True)
        self.assertIn("done:", self.lines[-1])

    def test_cli_errors(self) -> None:
        """The command explains a missing source file or a config without a PostgreSQL section."""
        code, _, err = run_main(port_db.main, ["--sqlite-database", "/nonexistent.db", "--postgres-config", "x"])
        self.assertEqual((code, "does not exist" in err), (1, True))
        cfg = self.mktemp()
        with open(cfg, "w") as f:
            f.write("database:\n  name: sqlite3\n")
        code, _, err = run_main(port_db.main, ["--sqlite-database", self.sqlite_path, "--postgres-config", cfg])
        self.assertEqual((code, "psycopg2" in err), (1, True))
