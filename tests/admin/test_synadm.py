"""synadm (the Synapse admin CLI, from PyPI) against a real matrixd process on loopback.

The process boundary is the point: synadm speaks HTTP to the admin API the way
operators' tools do, so paths and JSON shapes must match what it expects.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import time
from typing import Any

import treq
import yaml
from twisted.internet import defer, protocol, reactor, task
from twisted.trial import unittest

from matrixd.config.generate import generate_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYNADM = os.path.join(os.path.dirname(sys.executable), "synadm")


class _Collect(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value.exitCode if reason.value.exitCode is not None else -1)


def _json_documents(out: str) -> list[Any]:
    """The JSON documents synadm printed, in order (some commands print several; logs are skipped)."""
    decoder = json.JSONDecoder()
    docs: list[Any] = []
    i = 0
    while True:
        starts = [j for j in (out.find("{", i), out.find("[", i)) if j >= 0]
        if not starts:
            return docs
        try:
            doc, i = decoder.raw_decode(out, min(starts))
        except json.JSONDecodeError:
            i = min(starts) + 1
            continue
        docs.append(doc)


class SynadmTests(unittest.TestCase):
    timeout = 180

    async def _exec(self, argv: list[str], env: dict[str, str], cwd: str) -> tuple[int, str]:
        proc = _Collect()
        reactor.spawnProcess(proc, argv[0], argv, env=env, path=cwd)  # type: ignore[attr-defined]
        code = await proc.ended
        return code, proc.output.decode(errors="replace")

    async def _synadm(self, *args: str) -> Any:
        code, out = await self._exec([SYNADM, "-c", self.synadm_cfg, "--batch", "-o", "json", *args], self.env,
                                    self.workdir)
        self.assertEqual(code, 0, out)
        return _json_documents(out)[-1]

    async def test_synadm_against_matrixd(self) -> None:
        """synadm lists users and rooms, shows a user and the version, deactivates a user, deletes a room
        and deletes/purges media on a running matrixd, each with the expected result."""
        self.assertTrue(shutil.which(SYNADM) or os.path.exists(SYNADM), "synadm is not installed in the venv")
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        config_path = os.path.join(self.workdir, "homeserver.yaml")
        ready_file = os.path.join(self.workdir, "ready.json")
        generate_config("localhost", config_path, os.path.join(self.workdir, "data"))
        with open(config_path) as f:
            raw = yaml.safe_load(f)
        raw["listeners"][0]["port"] = 0
        raw["bcrypt_rounds"] = 4
        with open(config_path, "w") as f:
            yaml.safe_dump(raw, f)
        self.env = dict(os.environ)
        self.env["MATRIXD_READY_FILE"] = ready_file
        self.env["HOME"] = self.workdir
        self.env["PYTHONPATH"] = REPO_ROOT + os.pathsep + self.env.get("PYTHONPATH", "")
        server = _Collect()
        transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            server, sys.executable, [sys.executable, "-m", "matrixd.app.homeserver", "-c", config_path],
            env=self.env, path=self.workdir,
        )

        def stop() -> "defer.Deferred[Any] | None":
            if server.ended.called:
                return None
            transport.signalProcess("KILL")
            return server.ended.addBoth(lambda _: None)

        self.addCleanup(stop)
        for _ in range(600):
            if os.path.exists(ready_file) or server.ended.called:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        self.assertTrue(os.path.exists(ready_file), server.output.decode(errors="replace"))
        with open(ready_file) as f:
            port = json.load(f)["listeners"][0]["port"]
        base = f"http://127.0.0.1:{port}"

        script = os.path.join(REPO_ROOT, "scripts", "register_new_matrixd_user")
        code, out = await self._exec([sys.executable, script, "-c", config_path, "-u", "root", "-p", "s3cret", "-a",
                                     base], self.env, self.workdir)
        self.assertEqual(code, 0, out)
        response = await treq.post(f"{base}/_matrix/client/v3/login", json={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "root"}, "password": "s3cret",
        }, persistent=False)
        token = (await response.json())["access_token"]
        response = await treq.post(f"{base}/_matrix/client/v3/createRoom", json={"name": "Lobby"},
                                   headers={"Authorization": f"Bearer {token}"}, persistent=False)
        room_id = (await response.json())["room_id"]

        self.synadm_cfg = os.path.join(self.workdir, "synadm.yaml")
        with open(self.synadm_cfg, "w") as f:
            yaml.safe_dump({"user": "root", "token": token, "protocol": "http", "base_url": base,
                            "admin_path": "/_synapse/admin", "matrix_path": "/_matrix", "format": "json",
                            "timeout": 30, "server_discovery": "dns", "homeserver": "localhost",
                            "ssl_verify": False}, f)

        users = await self._synadm("user", "list")
        self.assertEqual([u["name"] for u in users["users"]], ["@root:localhost"])
        details = await self._synadm("user", "details", "@root:localhost")
        self.assertTrue(details["admin"])
        rooms = await self._synadm("room", "list")
        self.assertEqual([r["room_id"] for r in rooms["rooms"]], [room_id])
        room = await self._synadm("room", "details", room_id)
        self.assertEqual(room["name"], "Lobby")
        version = await self._synadm("version")
        self.assertIn("server_version", version)

        # Deactivate a user.
        code, out = await self._exec([sys.executable, script, "-c", config_path, "-u", "victim", "-p", "pw-victim",
                                     "--no-admin", base], self.env, self.workdir)
        self.assertEqual(code, 0, out)
        code, out = await self._exec([SYNADM, "-c", self.synadm_cfg, "--batch", "-o", "json", "user", "deactivate",
                                     "@victim:localhost"], self.env, self.workdir)
        self.assertEqual(code, 0, out)
        self.assertTrue((await self._synadm("user", "details", "@victim:localhost"))["deactivated"])
        response = await treq.post(f"{base}/_matrix/client/v3/login", json={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "victim"},
            "password": "pw-victim"}, persistent=False)
        self.assertEqual(response.code, 403)
        await response.content()

        # Delete a room (v2, asynchronous): the delete id's status reaches "complete", the room is gone.
        deleted = await self._synadm("room", "delete", room_id)
        delete_id = deleted["delete_id"]
        for _ in range(200):
            status = await self._synadm("room", "delete-status", "-d", delete_id)
            if status.get("status") in ("complete", "failed"):
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(status["status"], "complete", status)
        self.assertEqual((await self._synadm("room", "list"))["rooms"], [])

        # Delete local media by id, and purge the remote media cache.
        response = await treq.post(f"{base}/_matrix/media/v3/upload?filename=a.txt", data=b"to be deleted",
                                   headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
                                   persistent=False)
        media_id = (await response.json())["content_uri"].rsplit("/", 1)[1]
        self.assertEqual((await self._synadm("media", "delete", "--media-id", media_id))["deleted_media"],
                         [media_id])
        response = await treq.get(f"{base}/_matrix/client/v1/media/download/localhost/{media_id}",
                                  headers={"Authorization": f"Bearer {token}"}, persistent=False)
        self.assertEqual(response.code, 404)
        await response.content()
        # Bulk delete by size then by age: the server answers when its background job is done.
        uploaded = {}
        for name, size in (("big", 3000), ("small", 10)):
            response = await treq.post(f"{base}/_matrix/media/v3/upload?filename={name}", data=b"x" * size,
                                       headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
                                       persistent=False)
            uploaded[name] = (await response.json())["content_uri"].rsplit("/", 1)[1]
        future_ms = str(int(time.time() * 1000) + 60_000)
        by_size = await self._synadm("media", "delete", "--before-ts", future_ms, "--size", "2")
        self.assertEqual(by_size, {"deleted_media": [uploaded["big"]], "total": 1})
        by_age = await self._synadm("media", "delete", "--before-ts", future_ms)
        self.assertEqual(by_age, {"deleted_media": [uploaded["small"]], "total": 1})
        db = sqlite3.connect(os.path.join(self.workdir, "data", "homeserver.db"), timeout=30)
        try:
            with db:
                db.execute("INSERT INTO remote_media_cache (server_name, media_id, media_type, media_length,"
                           " created_ts, sha256, authenticated) VALUES ('far.example', 'oldRemote', 'text/plain',"
                           " 3, 1000, 'x', 1)")
        finally:
            db.close()
        self.assertEqual(await self._synadm("media", "purge", "--before-days", "1"), {"deleted": 1})
        self.assertEqual(await self._synadm("media", "purge", "--before-days", "1"), {"deleted": 0})
