"""A real deployment on loopback for multi-process tests: master + workers + nginx, on a fresh PostgreSQL database.

:class:`Deployment` writes a homeserver.yaml, one file per worker in
``workers/`` and a signing key into the test's temporary directory, creates
a uniquely named PostgreSQL database (dropped in cleanup), starts everything
with ``scripts/matrixdctl`` (which waits for every ready file), then starts
nginx (no daemon, its own pid/log/temp files) with a config rendered from
``contrib/nginx``'s template.  Every port is chosen up front, so a process
restarted mid-test comes back where nginx and the workers expect it.

Cleanup always runs (``addCleanup``): SIGKILL of the process group of
everything whose pid file is left, nginx's too (a graceful ``matrixdctl stop``
is tested on its own; killing is faster and cannot hang).

The HTTP client is plain ``urllib`` (synchronous; tests may use threads).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Optional

import signedjson.key
import yaml
from twisted.trial.unittest import TestCase

from matrixd.testing.ports import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MATRIXDCTL = os.path.join(ROOT, "scripts", "matrixdctl")
NGINX_TEMPLATE_DIR = os.path.join(ROOT, "contrib", "nginx")
SERVER_NAME = "workers.test"
SECRET = "multi-process test secret"
PG_DSN_ENV = "MATRIXD_TEST_PG_DSN"
DEFAULT_PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"

RELAXED = {"per_second": 100000, "burst_count": 100000}


def find_nginx() -> str:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("nginx is not installed (apt-get install -y nginx; scripts/run-tests installs it)")


def _load_renderer() -> Any:
    spec = importlib.util.spec_from_file_location("matrixd_nginx_render", os.path.join(NGINX_TEMPLATE_DIR,
                                                                                     "render_conf.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Response:
    def __init__(self, code: int, body: bytes, headers: dict[str, str]) -> None:
        self.code = code
        self.body = body
        self.headers = headers

    @property
    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


class Deployment:
    """See the module docstring.  Worker names: ``sync1``, ``fedreader1``, ``media1``, ``fedsender1``."""

    def __init__(self, testcase: TestCase, *, sync_workers: int = 1, other_workers: bool = True,
                 extra_config: Optional[dict[str, Any]] = None, source: Optional[str] = None) -> None:
        """``sync_workers`` sync workers (``sync1``...); ``other_workers``: the reader, media worker and sender
        (without them and with no sync worker it is a monolith behind nginx). ``testcase`` needs only
        ``mktemp()`` and ``addCleanup()`` (the benchmark passes a stand-in). ``source``: another checkout
        whose scripts/matrixdctl (and so whose matrixd) runs the processes (the benchmark's baseline)."""
        self.testcase = testcase
        self.matrixdctl_path = os.path.join(source, "scripts", "matrixdctl") if source else MATRIXDCTL
        self.sync_names = [f"sync{i + 1}" for i in range(sync_workers)]
        self.other_workers = other_workers
        self.extra_config = dict(extra_config or {})
        self.dir = os.path.abspath(testcase.mktemp())
        os.makedirs(os.path.join(self.dir, "workers"))
        self.run_dir = os.path.join(self.dir, "run")
        os.makedirs(self.run_dir)
        names = ["main", "main_repl", "main_internal", "main_metrics", "fedreader1",
                 "fedreader1_metrics", "media1", "media1_metrics", "fedsender1_metrics", "nginx", "remote1",
                 "remote2"] + [n for s in self.sync_names for n in (s, f"{s}_metrics")]
        self.ports = dict(zip(names, free_ports(len(names))))
        self.nginx: Optional[subprocess.Popen[bytes]] = None
        self.dbname = f"matrixd_w_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._create_database()
        testcase.addCleanup(self._drop_database)
        self._write_configs()
        testcase.addCleanup(self._kill_everything)

    # -- database ---------------------------------------------------------------

    def _pg_params(self) -> dict[str, Any]:
        import psycopg2.extensions

        params: dict[str, Any] = dict(psycopg2.extensions.parse_dsn(os.environ.get(PG_DSN_ENV) or DEFAULT_PG_DSN))
        params.setdefault("connect_timeout", 10)
        return params

    def _admin(self, statement: str) -> None:
        import psycopg2

        conn = psycopg2.connect(**self._pg_params())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def _create_database(self) -> None:
        self._admin(f"CREATE DATABASE \"{self.dbname}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
                    "TEMPLATE template0")

    def _drop_database(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')

    # -- configs ----------------------------------------------------------------

    def _listener(self, port: str, names: list[str]) -> dict[str, Any]:
        return {"port": self.ports[port], "bind_addresses": ["127.0.0.1"], "type": "http", "x_forwarded": True,
                "resources": [{"names": names}]}

    def _metrics(self, port: str) -> dict[str, Any]:
        return {"port": self.ports[port], "bind_addresses": ["127.0.0.1"], "type": "metrics"}

    def _write_configs(self) -> None:
        key_path = os.path.join(self.dir, "signing.key")
        with open(key_path, "w", encoding="utf-8") as f:
            signedjson.key.write_signing_keys(f, [signedjson.key.generate_signing_key("a_test")])
        pg = self._pg_params()
        pg.pop("connect_timeout", None)
        pg.pop("dbname", None)
        log_config = os.path.join(self.dir, "log.yaml")
        with open(log_config, "w", encoding="utf-8") as f:
            yaml.safe_dump({
                "version": 1,
                "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
                "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
                "root": {"level": "INFO", "handlers": ["stderr"]},
                "disable_existing_loggers": False,
            }, f)
        shared: dict[str, Any] = {
            "server_name": SERVER_NAME,
            "signing_key_path": key_path,
            "public_baseurl": f"http://127.0.0.1:{self.ports['nginx']}/",
            "log_config": log_config,
            "database": {"name": "psycopg2", "args": {**pg, "dbname": self.dbname, "cp_min": 1, "cp_max": 5}},
            "media_store_path": os.path.join(self.dir, "media"),
            "enable_metrics": True,
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "bcrypt_rounds": 4,
            "rc_message": RELAXED, "rc_registration": RELAXED, "rc_media_create": RELAXED,
            "rc_login": {"address": RELAXED, "account": RELAXED, "failed_attempts": RELAXED},
            "rc_joins": {"local": RELAXED, "remote": RELAXED}, "rc_joins_per_room": RELAXED,
            "listeners": [
                self._listener("main", ["client", "federation", "media", "keys"]),
                self._listener("main_internal", ["replication"]),
                {"port": self.ports["main_repl"], "bind_addresses": ["127.0.0.1"], "type": "replication"},
                self._metrics("main_metrics"),
            ],
            "worker_replication_secret": SECRET,
            "worker_replication_host": "127.0.0.1",
            "worker_replication_port": self.ports["main_repl"],
            "instance_map": {"main": {"host": "127.0.0.1", "port": self.ports["main_internal"]}},
            "federation_sender_instances": ["fedsender1"] if self.other_workers else [],
            # Remote servers in tests are HTTPS servers on loopback with self-signed certificates.
            "federation_verify_certificates": False,
            "ip_range_whitelist": ["127.0.0.0/8"],
            "trusted_key_servers": [],
        }
        shared.update(self.extra_config)
        self.config_path = os.path.join(self.dir, "homeserver.yaml")
        with open(self.config_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(shared, f)
        workers: dict[str, tuple[str, list[dict[str, Any]]]] = {
            name: ("sync", [self._listener(name, ["client"]), self._metrics(f"{name}_metrics")])
            for name in self.sync_names
        }
        if self.other_workers:
            workers.update({
            "fedreader1": ("federation_reader", [self._listener("fedreader1", ["federation", "keys"]),
                                                 self._metrics("fedreader1_metrics")]),
            "media1": ("media_repository", [self._listener("media1", ["media", "client", "federation"]),
                                            self._metrics("media1_metrics")]),
            "fedsender1": ("federation_sender", [self._metrics("fedsender1_metrics")]),
            })
        for name, (app, listeners) in workers.items():
            with open(os.path.join(self.dir, "workers", f"{name}.yaml"), "w", encoding="utf-8") as f:
                yaml.safe_dump({"worker_app": app, "worker_name": name, "worker_listeners": listeners}, f)

    # -- processes --------------------------------------------------------------

    def matrixdctl(self, *args: str, timeout: float = 90.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, self.matrixdctl_path, "-c", self.config_path, "--run-dir", self.run_dir, "--timeout", "45",
               *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        if check and result.returncode != 0:
            raise AssertionError(f"matrixdctl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def start(self) -> None:
        self.matrixdctl("start")
        self.start_nginx()

    def pid(self, name: str) -> int:
        with open(os.path.join(self.run_dir, f"{name}.pid"), encoding="utf-8") as f:
            return int(f.read())

    def ready(self, name: str) -> dict[str, Any]:
        with open(os.path.join(self.run_dir, f"{name}.ready.json"), encoding="utf-8") as f:
            ready: dict[str, Any] = json.load(f)
        return ready

    def kill9(self, name: str) -> None:
        """SIGKILL a process (and its group), as a crash would; waits until it is gone."""
        pid = self.pid(name)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)

    def log(self, name: str) -> str:
        try:
            with open(os.path.join(self.run_dir, f"{name}.log"), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def start_nginx(self) -> None:
        render = _load_renderer().render
        ngx = os.path.join(self.dir, "nginx")
        os.makedirs(ngx, exist_ok=True)
        snippet = render(
            listen=[f"127.0.0.1:{self.ports['nginx']}"], server_name=SERVER_NAME,
            main=[f"127.0.0.1:{self.ports['main']}"], sync=[f"127.0.0.1:{self.ports[n]}" for n in self.sync_names],
            federation_readers=[f"127.0.0.1:{self.ports['fedreader1']}"] if self.other_workers else [],
            media=[f"127.0.0.1:{self.ports['media1']}"] if self.other_workers else [],
        )
        with open(os.path.join(ngx, "matrixd.conf"), "w", encoding="utf-8") as f:
            f.write(snippet)
        temp = " ".join(f"{kind}_temp_path {ngx}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                         "scgi"))
        with open(os.path.join(ngx, "nginx.conf"), "w", encoding="utf-8") as f:
            f.write(
                f"daemon off;\nmaster_process off;\npid {ngx}/nginx.pid;\nerror_log {ngx}/error.log info;\n"
                "events { worker_connections 512; }\n"
                f"http {{\n  access_log {ngx}/access.log;\n  {temp}\n  include {ngx}/matrixd.conf;\n}}\n"
            )
        log = open(os.path.join(ngx, "stderr.log"), "wb")
        self.nginx = subprocess.Popen([find_nginx(), "-p", ngx, "-c", os.path.join(ngx, "nginx.conf"),
                                       "-e", os.path.join(ngx, "error.log")],
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 15
        while True:
            if self.nginx.poll() is not None:
                with open(os.path.join(ngx, "error.log"), encoding="utf-8", errors="replace") as f:
                    raise AssertionError(f"nginx exited: {f.read()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.ports["nginx"]), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("nginx did not start listening") from None
                time.sleep(0.05)

    def _kill_everything(self) -> None:
        for entry in os.listdir(self.run_dir):
            if entry.endswith(".pid"):
                try:
                    with open(os.path.join(self.run_dir, entry), encoding="utf-8") as f:
                        os.killpg(int(f.read()), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        if self.nginx is not None and self.nginx.poll() is None:
            os.killpg(self.nginx.pid, signal.SIGKILL)
            self.nginx.wait(10)

    # -- HTTP -------------------------------------------------------------------

    def base(self, name: str = "nginx") -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def request(self, method: str, path: str, body: Any = None, token: Optional[str] = None, *,
                via: str = "nginx", timeout: float = 30.0, raw: Optional[bytes] = None,
                headers: Optional[dict[str, str]] = None) -> Response:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base(via) + path, data=data, method=method)
        if body is not None and raw is None:
            req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return Response(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as e:
            return Response(e.code, e.read(), dict(e.headers))

    def metrics(self, name: str) -> str:
        port = f"{name}_metrics"
        with urllib.request.urlopen(f"{self.base(port)}/metrics", timeout=10) as resp:
            text: str = resp.read().decode()
            return text

    def servlet_requests(self, name: str, servlet: str) -> float:
        """How many requests ``name`` answered with ``servlet`` (from its /metrics)."""
        total = 0.0
        for line in self.metrics(name).splitlines():
            if line.startswith("matrixd_http_server_requests_total{") and f'servlet="{servlet}"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def register(self, localpart: str, password: str = "correct horse") -> tuple[str, str]:
        """Register through nginx (UIA with m.login.dummy); returns (user_id, access_token)."""
        body: dict[str, Any] = {"username": localpart, "password": password}
        first = self.request("POST", "/_matrix/client/v3/register", body)
        assert first.code == 401, (first.code, first.body)
        body["auth"] = {"type": "m.login.dummy", "session": first.json["session"]}
        second = self.request("POST", "/_matrix/client/v3/register", body)
        assert second.code == 200, (second.code, second.body)
        return second.json["user_id"], second.json["access_token"]

    def login(self, localpart: str, password: str = "correct horse") -> str:
        resp = self.request("POST", "/_matrix/client/v3/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart}, "password": password,
        })
        assert resp.code == 200, (resp.code, resp.body)
        token: str = resp.json["access_token"]
        return token


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


SYNC_FILTER = urllib.parse.quote(json.dumps({"room": {"timeline": {"limit": 1000}}, "presence": {"types": []}}))
