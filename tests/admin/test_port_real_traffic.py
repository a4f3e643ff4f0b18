"""matrixd_port_db on a database full of real traffic: a real client talks to a SQLite
server, the database is ported to PostgreSQL by the real command, and the real-client
conversation then runs against the ported server, which also still serves the old history.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import yaml
from nio import LoginResponse, RoomCreateResponse, RoomMessagesResponse, RoomSendResponse
from twisted.internet import reactor, threads
from twisted.trial import unittest

from matrixd.testing.process import REPO_ROOT, create_postgres_database, start_matrixd_for_test
from tests.e2e.test_nio import (
    StepFailed,
    conversation,
    expect,
    new_client,
    register,
    step,
)

ROOM_BODIES = [f"before the port {i}" for i in range(5)]


async def seed(base_url: str) -> str:
    """One more user with a room of messages, to find again after the port; returns the room id."""
    carol = new_client(base_url, "carol")
    try:
        async with step("seed: carol's room"):
            await register(carol, "carol", "carol-secret-1")
            room = expect(await carol.room_create(name="Old times"), RoomCreateResponse, "create room")
            for body in ROOM_BODIES:
                expect(await carol.room_send(room.room_id, "m.room.message", {"msgtype": "m.text", "body": body}),
                       RoomSendResponse, "send")
            return str(room.room_id)
    finally:
        await carol.close()


async def check_history(tc: unittest.TestCase, base_url: str, room_id: str) -> None:
    """carol logs in with her old password on the ported server and pages back through her room."""
    carol = new_client(base_url, "carol")
    try:
        async with step("ported: carol logs in and reads history"):
            expect(await carol.login("carol-secret-1"), LoginResponse, "login")
            messages = expect(await carol.room_messages(room_id, start="", limit=50), RoomMessagesResponse,
                              "messages")
            bodies = [e.source["content"].get("body") for e in messages.chunk
                      if e.source["type"] == "m.room.message"]
            tc.assertEqual(bodies, list(reversed(ROOM_BODIES)))
            expect(await carol.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "after"}),
                   RoomSendResponse, "send after the port")
    finally:
        await carol.close()


class PortRealTrafficTests(unittest.TestCase):
    timeout = 400

    async def test_port_then_real_client(self) -> None:
        """Real traffic on SQLite, matrixd_port_db to PostgreSQL, then the real-client test on the result."""
        source = await start_matrixd_for_test(self, reactor, engine="sqlite")
        try:
            await threads.deferToThread(asyncio.run, conversation(self, source.base_url, source.server_name))
            room_id = await threads.deferToThread(asyncio.run, seed(source.base_url))
        except StepFailed as e:
            self.fail(f"{e}\n--- source server log ---\n{source.log_tail(4000)}")
        self.assertEqual(source.stop(), 0, source.log_tail())
        sqlite_path = os.path.join(source.directory, "data", "homeserver.db")
        self.assertTrue(os.path.exists(sqlite_path))

        database = create_postgres_database("matrixd_tport")
        self.addCleanup(database.drop)
        db_section: dict[str, Any] = {"name": "psycopg2", "args": {**database.connect_args(), "cp_min": 1,
                                                                     "cp_max": 5}}
        pg_config = os.path.abspath(self.mktemp()) + ".yaml"
        with open(pg_config, "w", encoding="utf-8") as f:
            yaml.safe_dump({"database": db_section}, f)
        env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
        ported = await threads.deferToThread(
            subprocess.run,
            [sys.executable, "-m", "matrixd.cli.port_db", "--sqlite-database", sqlite_path,
             "--postgres-config", pg_config, "--batch-size", "50"],
            capture_output=True, text=True, env=env, timeout=300,
        )
        self.assertEqual(ported.returncode, 0, ported.stdout + ported.stderr)
        self.assertIn("done:", ported.stdout + ported.stderr)

        # The ported database under a new process with the same server name and signing key, as an
        # operator moving the server would do.
        with open(os.path.join(source.directory, "homeserver.yaml"), encoding="utf-8") as f:
            signing_key_path = yaml.safe_load(f)["signing_key_path"]
        target = await start_matrixd_for_test(self, reactor, engine="sqlite",
                                              server_name=source.server_name,
                                              config_overrides={"database": db_section,
                                                                "signing_key_path": signing_key_path})
        try:
            await threads.deferToThread(asyncio.run, check_history(self, target.base_url, room_id))
            await threads.deferToThread(asyncio.run, conversation(self, target.base_url, target.server_name))
        except StepFailed as e:
            self.fail(f"{e}\n--- ported server log ---\n{target.log_tail(4000)}")
        self.assertEqual(target.stop(), 0, target.log_tail())
        self.assertNotIn("Traceback", target.log_tail(10**7))
