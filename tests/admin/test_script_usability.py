"""Every operator script: ``--help`` a person can follow, a clear error (no traceback) for a bad
config or an unreachable server, and the ``register_new_matrix_user`` name (the issue's) next to
``register_new_matrixd_user``.  Run as real subprocesses, the way operators run them.
"""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.internet import reactor
from twisted.trial import unittest

from matrixd.testing.ports import free_port
from matrixd.testing.process import REGISTRATION_SHARED_SECRET, REPO_ROOT, start_matrixd_for_test

SCRIPTS = os.path.join(REPO_ROOT, "scripts")
# (script in scripts/, words its --help must contain)
HELP = {
    "register_new_matrixd_user": ("shared secret", "--admin", "--config", "server_url"),
    "register_new_matrix_user": ("shared secret", "--admin", "--config", "server_url"),
    "hash_password": ("bcrypt", "--password", "--config"),
    "export_signing_key": ("signing key", "--config", "old_signing_keys"),
    "update_database": ("schema", "--config"),
    "matrixd_port_db": ("SQLite", "PostgreSQL", "--force", "--batch-size"),
    "matrixdctl": ("start", "stop", "status"),
}


def run(script: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, os.path.join(SCRIPTS, script), *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=120)


class ScriptUsabilityTests(unittest.TestCase):
    timeout = 300

    def test_help(self) -> None:
        """Every script's --help exits 0 and explains its options."""
        for script, words in HELP.items():
            result = run(script, "--help")
            self.assertEqual(result.returncode, 0, (script, result.stderr))
            self.assertIn("usage:", result.stdout, script)
            for word in words:
                self.assertIn(word.lower(), result.stdout.lower(), (script, word))

    def test_bad_config(self) -> None:
        """A missing or malformed config is one clear line on stderr and exit status 1, never a traceback."""
        missing = os.path.abspath(self.mktemp()) + ".yaml"
        broken = os.path.abspath(self.mktemp()) + ".yaml"
        with open(broken, "w", encoding="utf-8") as f:
            f.write("server_name: [unclosed\n")
        for config in (missing, broken):
            for script, args in (("register_new_matrixd_user", ("-c", config, "-u", "x", "-p", "y", "--no-admin")),
                                 ("register_new_matrix_user", ("-c", config, "-u", "x", "-p", "y", "--no-admin")),
                                 ("hash_password", ("-c", config, "-p", "pw")),
                                 ("export_signing_key", ("-c", config)),
                                 ("update_database", ("-c", config))):
                result = run(script, *args)
                self.assertEqual(result.returncode, 1, (script, config, result.stdout, result.stderr))
                self.assertNotIn("Traceback", result.stderr, script)
                self.assertIn(os.path.basename(config), result.stderr, (script, result.stderr))

    def test_unreachable_server(self) -> None:
        """Registering against a server that is not there says it cannot reach it."""
        url = f"http://127.0.0.1:{free_port()}"
        for script in ("register_new_matrixd_user", "register_new_matrix_user"):
            result = run(script, "-k", "secret", "-u", "x", "-p", "y", "--no-admin", url)
            self.assertEqual(result.returncode, 1, result.stderr)
            self.assertIn("cannot reach", result.stderr)
            self.assertNotIn("Traceback", result.stderr)

    async def test_both_register_names_register(self) -> None:
        """register_new_matrix_user (the issue's name, in scripts/) and register_new_matrixd_user both
        register users on a running server, prompting for what is not given."""
        proc = await start_matrixd_for_test(self, reactor)
        for script, user in (("register_new_matrix_user", "viaissue"), ("register_new_matrixd_user", "viamatrixd")):
            result = run(script, "-k", REGISTRATION_SHARED_SECRET, "-u", user, proc.base_url,
                         stdin="pw-12345\npw-12345\nyes\n")
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn(f"@{user}:{proc.server_name}", result.stdout)


class RegisterScriptTests(unittest.TestCase):
    timeout = 120

    def test_runs_directly_without_matrixd_on_the_path(self) -> None:
        """scripts/register_new_matrix_user runs as an executable from any directory with a bare environment,
        and the module file runs on its own (it imports nothing of matrixd)."""
        bare = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        elsewhere = os.path.abspath(self.mktemp())
        os.makedirs(elsewhere)
        url = f"http://127.0.0.1:{free_port()}"
        module = os.path.join(REPO_ROOT, "matrixd", "cli", "register_new_matrix_user.py")
        for argv in ([os.path.join(SCRIPTS, "register_new_matrix_user")],
                     [sys.executable, os.path.join(SCRIPTS, "register_new_matrix_user")],
                     [sys.executable, module]):
            self.assertTrue(os.access(argv[0], os.X_OK), argv)
            result = subprocess.run([*argv, "-k", "s", "-u", "x", "-p", "y", "--no-admin", url], env=bare,
                                    cwd=elsewhere, capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 1, (argv, result.stderr))
            self.assertIn("cannot reach", result.stderr, argv)
            self.assertNotIn("Traceback", result.stderr, argv)
        result = subprocess.run([os.path.join(SCRIPTS, "register_new_matrix_user"), "--help"], env=bare,
                                cwd=elsewhere, capture_output=True, text=True, timeout=60)
        self.assertTrue(result.stdout.startswith("usage: register_new_matrix_user"), result.stdout)

    def test_console_commands_resolve(self) -> None:
        """Every console command in setup.cfg (register_new_matrixd_user among them) names a callable main."""
        import configparser
        import importlib

        parser = configparser.ConfigParser()
        parser.read(os.path.join(REPO_ROOT, "setup.cfg"))
        lines = [ln.strip() for ln in parser["options.entry_points"]["console_scripts"].splitlines()]
        entries = dict(ln.split(" = ", 1) for ln in lines if ln and not ln.startswith("#"))
        self.assertEqual(entries["register_new_matrixd_user"], "matrixd.cli.register_new_matrix_user:main")
        self.assertEqual(entries["register_new_matrix_user"], "matrixd.cli.register_new_matrix_user:main")
        for name, target in entries.items():
            module, func = target.split(":")
            self.assertTrue(callable(getattr(importlib.import_module(module), func)), name)
