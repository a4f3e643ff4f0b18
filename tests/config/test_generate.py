"""--generate-config: the written file loads back, is commented, and is never overwritten."""

from __future__ import annotations

import io
import os
import stat
from contextlib import redirect_stdout

import signedjson.key
from twisted.trial import unittest

from matrixd.api.errors import ConfigError
from matrixd.app.homeserver import main
from matrixd.config import load_config
from matrixd.config.generate import generate_config


class GenerateConfigTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.config_path = os.path.join(self.dir, "homeserver.yaml")
        self.data_dir = os.path.join(self.dir, "data")

    def test_generated_config_loads_back(self) -> None:
        """The generated file is a valid config for the dev setup described in the README."""
        generate_config("localhost", self.config_path, self.data_dir)
        config = load_config(self.config_path)
        self.assertEqual(config.server.server_name, "localhost")
        self.assertEqual(config.ignored_keys, ())
        self.assertEqual(config.database.name, "sqlite3")
        self.assertEqual(config.database.args["database"], os.path.join(os.path.abspath(self.data_dir), "homeserver.db"))
        self.assertEqual(config.media.media_store_path, os.path.join(os.path.abspath(self.data_dir), "media_store"))
        (listener,) = config.listeners.listeners
        self.assertEqual((listener.port, listener.bind_addresses), (8008, ("127.0.0.1",)))
        self.assertTrue({"client", "federation"} <= listener.resource_names)
        self.assertTrue(config.registration.enable_registration)
        self.assertTrue(config.registration.enable_registration_without_verification)
        secret = config.registration.registration_shared_secret
        self.assertIsNotNone(secret)
        assert secret is not None
        self.assertGreaterEqual(len(secret), 32)

    def test_signing_key_is_written_and_readable(self) -> None:
        """An ed25519 signing key is generated under the data dir, private to the owner."""
        generate_config("localhost", self.config_path, self.data_dir)
        path = load_config(self.config_path).server.signing_key_path
        assert path is not None
        self.assertTrue(path.startswith(os.path.abspath(self.data_dir)))
        with open(path) as f:
            (key,) = signedjson.key.read_signing_keys(f)
        self.assertEqual(key.alg, "ed25519")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.config_path).st_mode), 0o600)

    def test_secrets_differ_between_runs(self) -> None:
        """Every generated config gets fresh secrets."""
        generate_config("localhost", self.config_path, self.data_dir)
        other = os.path.join(self.dir, "other.yaml")
        generate_config("localhost", other, os.path.join(self.dir, "data2"))
        a, b = load_config(self.config_path), load_config(other)
        self.assertNotEqual(a.registration.registration_shared_secret, b.registration.registration_shared_secret)
        self.assertNotEqual(a.server.macaroon_secret_key, b.server.macaroon_secret_key)

    def test_file_is_commented(self) -> None:
        """The generated file explains the dev-only registration setting."""
        generate_config("localhost", self.config_path, self.data_dir)
        with open(self.config_path) as f:
            text = f.read()
        self.assertIn("DEVELOPMENT SETTING", text)
        self.assertGreater(sum(1 for line in text.splitlines() if line.lstrip().startswith("#")), 20)

    def test_refuses_to_overwrite(self) -> None:
        """An existing config is left byte-for-byte untouched."""
        with open(self.config_path, "w") as f:
            f.write("server_name: mine\n")
        with self.assertRaises(FileExistsError):
            generate_config("localhost", self.config_path, self.data_dir)
        with open(self.config_path) as f:
            self.assertEqual(f.read(), "server_name: mine\n")

    def test_existing_signing_key_is_kept(self) -> None:
        """A signing key already in the data dir is reused, not replaced."""
        generate_config("localhost", self.config_path, self.data_dir)
        key_path = load_config(self.config_path).server.signing_key_path
        assert key_path is not None
        with open(key_path) as f:
            before = f.read()
        os.unlink(self.config_path)
        generate_config("localhost", self.config_path, self.data_dir)
        with open(key_path) as f:
            self.assertEqual(f.read(), before)

    def test_invalid_server_name(self) -> None:
        """A bad server name is refused before anything is written."""
        with self.assertRaises(ConfigError):
            generate_config("not a name", self.config_path, self.data_dir)
        self.assertFalse(os.path.exists(self.config_path))

    def test_cli_generate_then_rerun_exits_zero(self) -> None:
        """`matrixd --generate-config` writes once; re-running prints a message and exits 0."""
        argv = ["--generate-config", "--server-name", "localhost", "--config-path", self.config_path,
                "--data-dir", self.data_dir]
        for expected in ("Wrote", "already exists"):
            out = io.StringIO()
            with redirect_stdout(out), self.assertRaises(SystemExit) as cm:
                main(argv)
            self.assertEqual(cm.exception.code, 0)
            self.assertIn(expected, out.getvalue())
        self.assertEqual(load_config(self.config_path).server.server_name, "localhost")
