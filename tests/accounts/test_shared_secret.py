"""Shared-secret registration (/_synapse/admin/v1/register) and the register_new_matrix_user script."""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
from typing import Any, Optional

import yaml
from twisted.internet import defer, protocol, reactor, task
from twisted.trial import unittest

from matrixd.cli.register_new_matrix_user import compute_mac
from matrixd.config.generate import generate_config
from tests.accounts.base import AccountsTestCase

URL = "/_synapse/admin/v1/register"
SECRET = "test_shared_secret"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO_ROOT, "scripts", "register_new_matrix_user")


def reference_mac(nonce: str, user: str, password: str, admin: bool, user_type: Optional[str] = None) -> str:
    """The MAC exactly as the admin API documentation spells it out."""
    mac = hmac.new(key=SECRET.encode("utf8"), digestmod=hashlib.sha1)
    mac.update(nonce.encode("utf8"))
    mac.update(b"\x00")
    mac.update(user.encode("utf8"))
    mac.update(b"\x00")
    mac.update(password.encode("utf8"))
    mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    if user_type:
        mac.update(b"\x00")
        mac.update(user_type.encode("utf8"))
    return mac.hexdigest()


class SharedSecretTests(AccountsTestCase):
    def nonce(self) -> str:
        ch = self.req("GET", URL)
        self.assertEqual(ch.code, 200, ch.json_body)
        nonce: str = ch.json_body["nonce"]
        return nonce

    def body(self, nonce: str, user: str = "alice", password: str = "pw", admin: bool = False,
             user_type: Optional[str] = None, **extra: Any) -> dict[str, Any]:
        b: dict[str, Any] = {"nonce": nonce, "username": user, "password": password, "admin": admin,
                             "mac": reference_mac(nonce, user, password, admin, user_type), **extra}
        if user_type is not None:
            b["user_type"] = user_type
        return b

    def test_mac_matches_documented_construction(self) -> None:
        """Our MAC (server and script) equals the documented HMAC-SHA1 construction."""
        for args in (("n", "u", "p", True, None), ("n2", "ü", "pä", False, "bot")):
            self.assertEqual(compute_mac(SECRET, *args), reference_mac(*args))

    def test_register_admin(self) -> None:
        """A correct MAC registers the user (admin here) with a device and a working token."""
        ch = self.req("POST", URL, self.body(self.nonce(), admin=True, displayname="Alice A."))
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body["user_id"], "@alice:test")
        self.assertIn("device_id", ch.json_body)
        self.assertEqual(self.whoami(ch.json_body["access_token"]).code, 200)
        user = self.hs.run(self.hs.components.accounts.users.get_user("@alice:test"))
        self.assertTrue(user.admin)
        self.assertEqual(self.req("GET", "/profile/@alice:test/displayname").json_body, {"displayname": "Alice A."})
        self.assertEqual(self.login("alice", "pw").code, 200)

    def test_user_type(self) -> None:
        """user_type is covered by the MAC and stored; unknown types are refused."""
        ch = self.req("POST", URL, self.body(self.nonce(), user="bot", user_type="bot"))
        self.assertEqual(ch.code, 200, ch.json_body)
        user = self.hs.run(self.hs.components.accounts.users.get_user("@bot:test"))
        self.assertEqual((user.user_type, user.admin), ("bot", False))
        ch = self.req("POST", URL, self.body(self.nonce(), user="x", user_type="wizard"))
        self.assert_error(ch, 400, "M_INVALID_PARAM")

    def test_bad_mac(self) -> None:
        """A wrong MAC (e.g. admin flipped after signing) is 403 and creates nothing."""
        body = self.body(self.nonce(), admin=False)
        body["admin"] = True
        self.assert_error(self.req("POST", URL, body), 403, "M_FORBIDDEN")
        self.assertIsNone(self.hs.run(self.hs.components.accounts.users.get_user("@alice:test")))

    def test_nonce_single_use(self) -> None:
        """A nonce works once, even after a failed attempt; unknown nonces are 400."""
        nonce = self.nonce()
        bad = self.body(nonce)
        bad["mac"] = "00" * 20
        self.assert_error(self.req("POST", URL, bad), 403, "M_FORBIDDEN")
        self.assert_error(self.req("POST", URL, self.body(nonce)), 400, "M_UNKNOWN")
        nonce = self.nonce()
        self.assertEqual(self.req("POST", URL, self.body(nonce)).code, 200)
        self.assert_error(self.req("POST", URL, self.body(nonce, user="bob")), 400, "M_UNKNOWN")
        self.assert_error(self.req("POST", URL, self.body("madeup", user="carol")), 400, "M_UNKNOWN")

    def test_nonce_expires(self) -> None:
        """A nonce older than 60 seconds is refused."""
        nonce = self.nonce()
        self.hs.advance(61)
        self.assert_error(self.req("POST", URL, self.body(nonce)), 400, "M_UNKNOWN")

    def test_bad_requests(self) -> None:
        """Missing fields, taken and invalid names are 400s."""
        ch = self.req("POST", URL, {"nonce": self.nonce(), "password": "pw", "mac": "x"})
        self.assert_error(ch, 400, "M_MISSING_PARAM")
        ch = self.req("POST", URL, {"username": "a", "password": "pw", "mac": "x"})
        self.assert_error(ch, 400, "M_MISSING_PARAM")
        self.assert_error(self.req("POST", URL, b"nope"), 400, "M_NOT_JSON")
        self.assertEqual(self.req("POST", URL, self.body(self.nonce())).code, 200)
        self.assert_error(self.req("POST", URL, self.body(self.nonce())), 400, "M_USER_IN_USE")
        self.assert_error(self.req("POST", URL, self.body(self.nonce(), user="a b")), 400, "M_INVALID_USERNAME")


class SharedSecretDisabledTests(AccountsTestCase):
    CONFIG = {"registration_shared_secret": None}

    def test_disabled(self) -> None:
        """Without registration_shared_secret both GET and POST are refused."""
        self.assertEqual(self.req("GET", URL).code, 400)
        self.assertEqual(self.req("POST", URL, {"nonce": "x"}).code, 400)


class _Collect(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value.exitCode if reason.value.exitCode is not None else -1)


class ScriptAgainstRealServerTests(unittest.TestCase):
    """The process boundary is the point: a real matrixd on loopback, the script as a subprocess."""

    timeout = 120

    async def _spawn(self, args: list[str], env: dict[str, str], cwd: str) -> tuple[int, str]:
        proc = _Collect()
        reactor.spawnProcess(proc, sys.executable, [sys.executable, *args], env=env,  # type: ignore[attr-defined]
                             path=cwd)
        code = await proc.ended
        return code, proc.output.decode(errors="replace")

    async def test_script_registers_user(self) -> None:
        """register_new_matrix_user -c homeserver.yaml registers an admin the server then logs in."""
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        config_path = os.path.join(workdir, "homeserver.yaml")
        ready_file = os.path.join(workdir, "ready.json")
        generate_config("localhost", config_path, os.path.join(workdir, "data"))
        with open(config_path) as f:
            raw = yaml.safe_load(f)
        raw["listeners"][0]["port"] = 0
        raw["bcrypt_rounds"] = 4
        with open(config_path, "w") as f:
            yaml.safe_dump(raw, f)
        env = dict(os.environ)
        env["MATRIXD_READY_FILE"] = ready_file
        env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        server = _Collect()
        transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            server, sys.executable, [sys.executable, "-m", "matrixd.app.homeserver", "-c", config_path],
            env=env, path=workdir,
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
        import json

        with open(ready_file) as f:
            port = json.load(f)["listeners"][0]["port"]
        base = f"http://127.0.0.1:{port}"

        # The script finds its checkout itself: no PYTHONPATH, run from another directory.
        script_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
        code, out = await self._spawn([SCRIPT, "-c", config_path, "-u", "root", "-p", "s3cret", "-a", base],
                                      script_env, workdir)
        self.assertEqual(code, 0, out)
        self.assertIn("Success! Registered @root:localhost", out)
        code, out = await self._spawn([SCRIPT, "-k", "wrong-secret", "-u", "eve", "-p", "x", "--no-admin", base],
                                      script_env, workdir)
        self.assertEqual(code, 1, out)
        self.assertIn("HTTP 403", out)

        import treq

        response = await treq.post(f"{base}/_matrix/client/v3/login", json={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "root"}, "password": "s3cret",
        }, persistent=False)
        self.assertEqual(response.code, 200)
        self.assertEqual((await response.json())["user_id"], "@root:localhost")
