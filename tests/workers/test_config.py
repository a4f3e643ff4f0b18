"""Worker configuration: merged -c files, the example worker configs, the operator files in contrib/."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import yaml
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from matrixd.api.errors import ConfigError
from matrixd.app.roles.definitions import WORKER_KINDS
from matrixd.app.roles.worker import worker_kind
from matrixd.app.worker import build_worker
from matrixd.config import load_config
from matrixd.config.root import parse_config_dict
from tests.workers.deployment import NGINX_TEMPLATE_DIR, ROOT, _load_renderer, find_nginx

SHARED: dict[str, Any] = {
    "server_name": "example.org",
    "database": {"name": "psycopg2", "args": {"dbname": "matrixd"}},
    "worker_replication_secret": "s3cret",
    "worker_replication_host": "127.0.0.1",
    "worker_replication_port": 9093,
    "instance_map": {"main": {"host": "127.0.0.1", "port": 9094}},
    "federation_sender_instances": ["fedsender1"],
    "enable_metrics": True,
    "pid_file": "/run/matrixd/main.pid",
}
EXAMPLES = os.path.join(ROOT, "workers")


class MergeTests(unittest.TestCase):
    def write(self, name: str, content: dict[str, Any]) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(content, f)
        return path

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)

    def test_later_files_win_key_by_key(self) -> None:
        """Several -c files merge top-level keys, the later file winning; the rest is kept."""
        a = self.write("a.yaml", {"server_name": "example.org", "max_upload_size": "1M", "enable_metrics": True})
        b = self.write("b.yaml", {"max_upload_size": "2M"})
        config = load_config([a, b])
        self.assertEqual((config.server.server_name, config.media.max_upload_size), ("example.org", 2 * 1024**2))
        self.assertTrue(config.metrics.enable_metrics)

    def test_directory_stands_for_its_yaml_files(self) -> None:
        """A directory given to -c means its *.yaml files in name order."""
        os.makedirs(os.path.join(self.dir, "conf.d"))
        self.write("conf.d/10.yaml", {"server_name": "example.org", "max_upload_size": "1M"})
        self.write("conf.d/20.yaml", {"max_upload_size": "3M"})
        self.assertEqual(load_config(os.path.join(self.dir, "conf.d")).media.max_upload_size, 3 * 1024**2)

    def test_non_mapping_file_is_a_config_error(self) -> None:
        """A file that is not a mapping is refused with its name."""
        path = os.path.join(self.dir, "list.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write("- a\n- b\n")
        with self.assertRaises(ConfigError) as cm:
            load_config([path])
        self.assertIn("list.yaml", str(cm.exception))


class ExampleWorkerTests(unittest.TestCase):
    def test_every_example_parses_and_every_kind_has_one(self) -> None:
        """workers/*.yaml merge with a shared config into valid worker configs, one per kind."""
        kinds = set()
        for name in sorted(os.listdir(EXAMPLES)):
            if not name.endswith(".yaml"):
                continue
            with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
                raw = {**SHARED, **yaml.safe_load(f)}
            config = parse_config_dict(raw)
            kind = worker_kind(config)
            kinds.add(kind.name)
            self.assertEqual(config.workers.worker_name, name[:-5])
            self.assertEqual(config.process_listeners, config.workers.worker_listeners)
            self.assertNotEqual(config.workers.worker_pid_file, config.server.pid_file)
            self.assertEqual(config.ignored_keys, ())
        self.assertEqual(kinds, set(WORKER_KINDS))

    def test_synapse_spellings_and_checks(self) -> None:
        """worker_app accepts Synapse's module names; a sender missing from federation_sender_instances is refused."""
        config = parse_config_dict({**SHARED, "worker_app": "synapse.app.media_repository", "worker_name": "m1"})
        self.assertEqual(config.workers.worker_app, "media_repository")
        self.assertFalse(config.workers.master_sends_federation)
        with self.assertRaises(ConfigError):
            parse_config_dict({**SHARED, "worker_app": "federation_sender", "worker_name": "other"})
        with self.assertRaises(ConfigError):
            worker_kind(parse_config_dict({**SHARED, "worker_app": "sync", "worker_name": "s1", "instance_map": {}}))
        self.assertTrue(parse_config_dict({"server_name": "example.org"}).workers.master_sends_federation)
        unlisted = {k: v for k, v in SHARED.items() if k != "federation_sender_instances"}
        with self.assertRaises(ConfigError):
            parse_config_dict({**unlisted, "worker_app": "federation_sender", "worker_name": "fedsender1"})
        with self.assertRaises(ConfigError):
            parse_config_dict({**SHARED, "federation_sender_instances": ["fs1", "fs2"]})

    def test_worker_refuses_sqlite_and_master_configs(self) -> None:
        """A worker needs PostgreSQL and a worker_app."""
        sqlite = parse_config_dict({**SHARED, "database": {"name": "sqlite3", "args": {"database": ":memory:"}},
                                    "worker_app": "sync", "worker_name": "s1"})
        with self.assertRaises(ConfigError):
            build_worker(sqlite, MemoryReactorClock())
        with self.assertRaises(ConfigError):
            build_worker(parse_config_dict(SHARED), MemoryReactorClock())


class OperatorFilesTests(unittest.TestCase):
    def test_matrixdctl_discovers_the_deployment(self) -> None:
        """matrixdctl status lists the master and every example worker as stopped (exit status 3)."""
        d = self.mktemp()
        os.makedirs(d)
        shared = os.path.join(d, "homeserver.yaml")
        with open(shared, "w", encoding="utf-8") as f:
            yaml.safe_dump(SHARED, f)
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "scripts", "matrixdctl"), "-c", shared, "-w", EXAMPLES,
             "--run-dir", os.path.join(d, "run"), "status"],
            capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(result.returncode, 3, result.stderr)
        for line in ("main (master): stopped", "sync1 (sync): stopped", "fedreader1 (federation_reader): stopped",
                     "media1 (media_repository): stopped", "fedsender1 (federation_sender): stopped"):
            self.assertIn(line, result.stdout)

    def test_rendered_nginx_config_is_valid(self) -> None:
        """The template renders to a config nginx accepts (nginx -t)."""
        d = os.path.abspath(self.mktemp())
        os.makedirs(d)
        snippet = _load_renderer().render(listen=["127.0.0.1:18080"], server_name="example.org",
                                          main=["127.0.0.1:8008"], sync=["127.0.0.1:8083", "127.0.0.1:8084"],
                                          federation_readers=["127.0.0.1:8085"], media=["127.0.0.1:8086"])
        self.assertIsNone(re.search("@[A-Z_]+@", snippet))
        with open(os.path.join(d, "matrixd.conf"), "w", encoding="utf-8") as f:
            f.write(snippet)
        with open(os.path.join(d, "nginx.conf"), "w", encoding="utf-8") as f:
            f.write(f"pid {d}/nginx.pid; error_log {d}/error.log;\nevents {{}}\n"
                    f"http {{ access_log off; client_body_temp_path {d}/b; proxy_temp_path {d}/p; "
                    f"fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s; include {d}/matrixd.conf; }}\n")
        result = subprocess.run([find_nginx(), "-t", "-p", d, "-c", os.path.join(d, "nginx.conf"), "-e",
                                 os.path.join(d, "error.log")], capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(os.path.exists(os.path.join(NGINX_TEMPLATE_DIR, "matrixd.conf.template")))

    def test_prometheus_and_grafana_files(self) -> None:
        """The scrape config covers every worker kind; every dashboard panel queries matrixd's metrics (Synapse's
        names where they mean the same, see docs/monitoring.md) or process metrics."""
        with open(os.path.join(ROOT, "contrib", "prometheus", "prometheus.yml"), encoding="utf-8") as f:
            scrape = yaml.safe_load(f)
        jobs = {job["job_name"] for job in scrape["scrape_configs"]}
        self.assertEqual(jobs, {"matrixd-main", "matrixd-sync", "matrixd-federation-reader", "matrixd-media",
                                "matrixd-federation-sender"})
        with open(os.path.join(ROOT, "contrib", "grafana", "matrixd-dashboard.json"), encoding="utf-8") as f:
            dashboard = json.load(f)
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        self.assertTrue(all(any(p in e for p in ("matrixd_", "synapse_", "process_", "python_")) for e in exprs))
        for wanted in ("synapse_http_server_requests_received_total",
                       "synapse_http_server_response_time_seconds_bucket",
                       "synapse_storage_transaction_time_sum_total", "matrixd_replication_stream_lag"):
            self.assertTrue(any(wanted in e for e in exprs), wanted)
