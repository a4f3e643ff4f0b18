"""Two homeservers that really federate: real processes on loopback, TLS on the federation port.

Each server is ``"matrixd"`` (this checkout, ``python -m matrixd.app.homeserver``)
or ``"synapse"`` (``python -m synapse.app.homeserver`` from the same virtualenv).
Every server gets:

* a server name ``127.0.0.1:<federation port>``: an IP literal with an explicit
  port, so discovery on both sides connects straight there (spec, "Resolving
  server names", step 1) with no DNS or ``.well-known``; two servers differ only
  by port;
* a federation listener on that port with TLS, using a self-signed certificate
  for ``127.0.0.1`` generated at start (``cryptography``), and a plain-HTTP
  client listener on another free port (``client_url``) for the test's clients;
* certificate verification off and loopback allowed in outbound IP filtering,
  no notaries (keys are fetched from the servers themselves), public rooms
  served over federation, relaxed rate limits, short federation retry intervals;
* shared-secret registration (``/_synapse/admin/v1/register``), which both
  servers implement, for creating users;
* matrixd's database from ``MATRIXD_TEST_DB`` (SQLite by default, a fresh
  PostgreSQL database with ``postgres``); Synapse's SQLite unless asked.

The API::

    pair = await start_federation_pair(directory, sleep, reactor, kinds=("matrixd", "synapse"))
    try:
        alice = await pair.first.register("alice")        # -> MatrixClient
        bob = await pair.second.register("bob")
        room = await alice.create_room(preset="public_chat")
        await bob.join(room, via=[pair.first.server_name])
        await bob.sync_until(lambda sync: ...)            # long-polls /sync until true
    finally:
        pair.stop()

``pair.first.kill_for_restart()`` / ``await pair.first.start_again()`` take a
server down and bring it back on the same ports and data.

For trial tests, :func:`federation_pair_for_test` registers the cleanup
itself, and :func:`shared_federation_pair` starts a pair once per test process
and key (so a test class can share one), stopping it when the process exits.
Server processes also get ``PR_SET_PDEATHSIG`` so they die with the test
process even if it is killed.

:class:`MatrixClient` is a thin client-server API client on ``treq`` (trial's
reactor): ``request`` for anything, helpers for what interop tests do most, and
``sync_until`` to wait for something to arrive through ``/sync``.
"""

from __future__ import annotations

import atexit
import ctypes
import datetime
import hashlib
import hmac
import ipaddress
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from typing import Any, Awaitable, Callable, Mapping, Optional, Sequence

import attrs
import signedjson.key
import treq
import yaml
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from matrixd.testing.database import selected_engine
from matrixd.testing.ports import free_ports
from matrixd.testing.process import (
    REGISTRATION_SHARED_SECRET, RELAXED_RATELIMITS, REPO_ROOT, PostgresDatabase, ServerProcess,
    create_postgres_database, write_matrixd_config,
)

Sleep = Callable[[float], Awaitable[Any]]
JsonDict = dict[str, Any]

KINDS = ("matrixd", "synapse")

# What both servers get (Synapse's key names; matrixd reads the same ones).
COMMON_SETTINGS: dict[str, Any] = {
    **RELAXED_RATELIMITS,
    "rc_room_creation": {"per_second": 1e6, "burst_count": 1e6},
    "rc_presence": {"per_user": {"per_second": 1e6, "burst_count": 1e6}},
    "rc_federation": {"window_size": 1000, "sleep_limit": 1000, "sleep_delay": 1, "reject_limit": 10000,
                      "concurrent": 100},
    "enable_registration": False,
    "federation_verify_certificates": False,
    # Outbound requests to loopback are refused by default on both servers; these are the exceptions.
    "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
    "trusted_key_servers": [],
    "allow_public_rooms_over_federation": True,
    "allow_profile_lookup_over_federation": True,
    "presence": {"enabled": True},
    "registration_shared_secret": REGISTRATION_SHARED_SECRET,
}

# Synapse backs off 10 minutes after one failed request to a destination by default;
# a test must not wait that long for a server that was briefly busy.
SYNAPSE_SETTINGS: dict[str, Any] = {
    "suppress_key_server_warning": True,
    # Synapse checks IP-literal server names against this list only (its allow list is not consulted).
    "federation_ip_range_blacklist": [],
    "report_stats": False,
    "federation": {
        "destination_min_retry_interval": "1s",
        "destination_retry_multiplier": 1.5,
        "destination_max_retry_interval": "10s",
        "client_timeout": "20s",
        # Transactions are retried in-request with growing delays; keep them short on loopback.
        "max_long_retry_delay": "1s",
        "max_short_retry_delay": "1s",
    },
    "caches": {"sync_response_cache_duration": 0},
    # Synapse's default lets only admins publish rooms to the directory.
    "room_list_publication_rules": [{"action": "allow"}],
}

_counter = itertools.count(1)


# -- Certificates ---------------------------------------------------------------------


def write_self_signed_certificate(directory: str, ip: str = "127.0.0.1") -> tuple[str, str]:
    """A fresh key and a self-signed certificate for ``ip`` (SAN ``IP:`` and ``DNS:localhost``).

    Returns ``(certificate_path, key_path)``, both PEM.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip)), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "tls.crt")
    key_path = os.path.join(directory, "tls.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ))
    return cert_path, key_path


# -- Processes ---------------------------------------------------------------------------


# Loaded here, not in the child: only async-signal-safe work may happen between fork and exec.
try:
    _PRCTL: Optional[Any] = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _PRCTL = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """preexec_fn: the server gets SIGTERM when the test process dies (Linux ``PR_SET_PDEATHSIG``)."""
    os.setsid()
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def _spawn(argv: list[str], directory: str, log_path: str, env: Mapping[str, str]) -> "subprocess.Popen[bytes]":
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(
            argv, cwd=directory, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=dict(env), preexec_fn=_die_with_parent,
        )
    finally:
        log.close()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("MATRIXD_READY_FILE", None)
    return env


@attrs.define
class TestHomeserver:
    """One server of a pair."""

    kind: str
    server_name: str
    # Plain HTTP, for clients (and unauthenticated federation endpoints).
    client_url: str
    # https://127.0.0.1:<port>: the TLS federation listener other servers use.
    federation_url: str
    process: ServerProcess
    reactor: Any
    # How to start the process again (restart()).
    argv: list[str] = attrs.field(factory=list)
    env: dict[str, str] = attrs.field(factory=dict)

    def stop(self) -> Optional[int]:
        """Stop for good (drops the server's PostgreSQL database)."""
        return self.process.stop()

    def kill_for_restart(self, grace_seconds: float = 10.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL) but keep its data, to :meth:`start_again` later."""
        popen = self.process.popen
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(grace_seconds)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(30)

    async def start_again(self, timeout: float = 120.0) -> None:
        """Start the process again on the same ports, config and data (after :meth:`kill_for_restart`)."""
        if self.process.is_running():
            raise RuntimeError(f"{self.server_name} is still running")
        self.process.popen = _spawn(self.argv, self.process.directory, self.process.log_path, self.env)
        try:
            await _wait_until_serving(self, _sleeper(self.reactor), timeout)
        except BaseException:
            self.process.stop(grace_seconds=2)
            raise

    def log_tail(self, max_bytes: int = 8000) -> str:
        return self.process.log_tail(max_bytes)

    async def register(self, localpart: str, *, password: Optional[str] = None, admin: bool = False,
                       displayname: Optional[str] = None) -> "MatrixClient":
        """A new user through shared-secret registration, logged in (the registration's access token)."""
        password = password or f"pw-{localpart}-secret"
        nonce_resp = await treq.get(self.client_url + "/_synapse/admin/v1/register", persistent=False)
        nonce = (await _json_body(nonce_resp))["nonce"]
        mac = hmac.new(
            REGISTRATION_SHARED_SECRET.encode(),
            b"\x00".join(p.encode() for p in (nonce, localpart, password, "admin" if admin else "notadmin")),
            digestmod=hashlib.sha1,
        )
        body: JsonDict = {"nonce": nonce, "username": localpart, "password": password, "admin": admin,
                          "mac": mac.hexdigest()}
        if displayname is not None:
            body["displayname"] = displayname
        resp = await treq.post(self.client_url + "/_synapse/admin/v1/register", json=body, persistent=False)
        result = await _json_body(resp)
        if resp.code != 200:
            raise RuntimeError(f"registering {localpart} on {self.kind} failed: {resp.code} {result}")
        return MatrixClient(self, result["user_id"], result["access_token"], result.get("device_id"),
                            password=password)


@attrs.define
class FederationPair:
    first: TestHomeserver
    second: TestHomeserver

    @property
    def servers(self) -> tuple[TestHomeserver, TestHomeserver]:
        return (self.first, self.second)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


async def start_homeserver(
    kind: str,
    directory: str,
    sleep: Sleep,
    reactor: Any,
    *,
    engine: str = "sqlite",
    pg_dsn: Optional[str] = None,
    extra_config: Optional[Mapping[str, Any]] = None,
    timeout: float = 120.0,
) -> TestHomeserver:
    """Start one federating server of ``kind`` in ``directory`` and wait until both its listeners answer.

    On failure the process is stopped (its database dropped) and ``RuntimeError``
    carries the end of its log.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    os.makedirs(directory, exist_ok=True)
    federation_port, client_port = free_ports(2)
    server_name = f"127.0.0.1:{federation_port}"
    cert_path, key_path = write_self_signed_certificate(directory)
    listeners = [
        {"port": client_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False, "x_forwarded": False,
         "resources": [{"names": ["client", "federation", "keys", "media"], "compress": False}]},
        {"port": federation_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": True,
         "x_forwarded": False, "resources": [{"names": ["federation", "keys"], "compress": False}]},
    ]
    settings: dict[str, Any] = {
        **COMMON_SETTINGS,
        "listeners": listeners,
        "tls_certificate_path": cert_path,
        "tls_private_key_path": key_path,
        "public_baseurl": f"http://127.0.0.1:{client_port}/",
    }
    database: Optional[PostgresDatabase] = None
    if engine == "postgres":
        database = create_postgres_database(f"matrixd_tfed{kind[0]}", pg_dsn)
    try:
        if kind == "matrixd":
            config_path = write_matrixd_config(
                directory, server_name=server_name, engine=engine, database=database,
                overrides={**settings, **(extra_config or {})},
            )
            argv = [sys.executable, "-m", "matrixd.app.homeserver", "-c", config_path]
            log_path = os.path.join(directory, "matrixd.log")
        else:
            config_path = _write_synapse_config(directory, server_name, settings, database, extra_config)
            argv = [sys.executable, "-m", "synapse.app.homeserver", "-c", config_path]
            log_path = os.path.join(directory, "synapse.log")
    except BaseException:
        if database is not None:
            database.drop()
        raise
    env = _child_env()
    popen = _spawn(argv, directory, log_path, env)
    process = ServerProcess(
        popen=popen, directory=directory, log_path=log_path, base_url=f"http://127.0.0.1:{client_port}",
        server_name=server_name, registration_shared_secret=REGISTRATION_SHARED_SECRET, database=database,
    )
    server = TestHomeserver(
        kind=kind, server_name=server_name, client_url=process.base_url,
        federation_url=f"https://127.0.0.1:{federation_port}", process=process, reactor=reactor,
        argv=argv, env=env,
    )
    try:
        await _wait_until_serving(server, sleep, timeout)
    except BaseException:
        process.stop(grace_seconds=2)
        raise
    return server


def _write_synapse_config(directory: str, server_name: str, settings: Mapping[str, Any],
                          database: Optional[PostgresDatabase], extra: Optional[Mapping[str, Any]]) -> str:
    data_dir = os.path.join(directory, "data")
    os.makedirs(data_dir, exist_ok=True)
    signing_key_path = os.path.join(directory, "signing.key")
    with open(signing_key_path, "w", encoding="ascii") as f:
        signedjson.key.write_signing_keys(f, [signedjson.key.generate_signing_key("a_" + os.urandom(3).hex())])
    log_config_path = os.path.join(directory, "log.yaml")
    with open(log_config_path, "w", encoding="utf-8") as f:
        yaml.safe_dump({
            "version": 1,
            "formatters": {"precise": {"format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                                                 "%(request)s - %(message)s"}},
            "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "precise"}},
            "loggers": {"synapse.storage.SQL": {"level": "INFO"}},
            "root": {"level": "INFO", "handlers": ["console"]},
            "disable_existing_loggers": False,
        }, f)
    raw: dict[str, Any] = {
        "server_name": server_name,
        "pid_file": os.path.join(directory, "homeserver.pid"),
        "signing_key_path": signing_key_path,
        "log_config": log_config_path,
        "media_store_path": os.path.join(data_dir, "media"),
        "macaroon_secret_key": os.urandom(16).hex(),
        "form_secret": os.urandom(16).hex(),
        **settings,
        **SYNAPSE_SETTINGS,
    }
    if database is not None:
        raw["database"] = {"name": "psycopg2", "args": {**database.connect_args(), "cp_min": 1, "cp_max": 5}}
    else:
        raw["database"] = {"name": "sqlite3", "args": {"database": os.path.join(data_dir, "homeserver.db")}}
    raw.update(extra or {})
    config_path = os.path.join(directory, "homeserver.yaml")
    with open(config_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(raw, f)
    return config_path


async def _wait_until_serving(server: TestHomeserver, sleep: Sleep, timeout: float) -> None:
    """Until ``/versions`` answers on the client port and the server's keys on the TLS federation port."""
    deadline = time.monotonic() + timeout
    urls = [server.client_url + "/_matrix/client/versions", server.federation_url + "/_matrix/key/v2/server"]
    agent = _insecure_agent(server.reactor)
    while urls:
        if not server.process.is_running():
            raise RuntimeError(
                f"{server.kind} exited with status {server.process.popen.returncode} before serving:\n"
                f"{server.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.kind} did not serve {urls[0]} within {timeout}s:\n{server.log_tail()}")
        try:
            resp = await treq.get(urls[0], agent=agent, timeout=5)
            await resp.content()
            if resp.code == 200:
                urls.pop(0)
                continue
        except Exception:
            pass
        await sleep(0.1)


def _insecure_agent(reactor: Any) -> Any:
    """An HTTP agent that accepts the pair's self-signed certificates (for probing the TLS port)."""
    from matrixd.http.tls import client_context, outbound_agent

    return outbound_agent(reactor, connect_timeout=5, context=client_context(verify=False))


async def start_federation_pair(
    directory: str,
    sleep: Sleep,
    reactor: Any,
    *,
    kinds: tuple[str, str] = ("matrixd", "synapse"),
    engine: Optional[str] = None,
    synapse_engine: str = "sqlite",
    extra_config: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> FederationPair:
    """Start two federating servers (in sub-directories ``a`` and ``b``) concurrently.

    ``engine`` is matrixd's database engine (default: ``MATRIXD_TEST_DB``);
    Synapse uses ``synapse_engine``. ``extra_config`` maps ``"a"``/``"b"`` to
    top-level config keys for that server. If either fails to start, both are stopped.
    """
    engine = engine or selected_engine()
    extra_config = extra_config or {}
    started: list[TestHomeserver] = []

    async def one(kind: str, sub: str) -> TestHomeserver:
        server = await start_homeserver(
            kind, os.path.join(directory, sub), sleep, reactor,
            engine=engine if kind == "matrixd" else synapse_engine, extra_config=extra_config.get(sub),
        )
        started.append(server)
        return server

    results = await defer.DeferredList(
        [defer.ensureDeferred(one(kinds[0], "a")), defer.ensureDeferred(one(kinds[1], "b"))],
        consumeErrors=True,
    )
    failures: list[Any] = [result for ok, result in results if not ok]
    if failures:
        for server in started:
            server.stop()
        failures[0].raiseException()
    first: TestHomeserver = results[0][1]
    second: TestHomeserver = results[1][1]
    return FederationPair(first=first, second=second)


def _sleeper(reactor: Any) -> Sleep:
    def sleep(seconds: float) -> "defer.Deferred[None]":
        return deferLater(reactor, seconds, lambda: None)
    return sleep


def federation_pair_for_test(testcase: TestCase, reactor: Any, **kwargs: Any) -> "defer.Deferred[FederationPair]":
    """:func:`start_federation_pair` in a test's temp directory, stopped in the test's cleanup."""
    directory = os.path.abspath(testcase.mktemp())
    holder: list[FederationPair] = []

    def _cleanup() -> None:
        for pair in holder:
            pair.stop()

    testcase.addCleanup(_cleanup)

    async def _start() -> FederationPair:
        pair = await start_federation_pair(directory, _sleeper(reactor), reactor, **kwargs)
        holder.append(pair)
        return pair

    return defer.ensureDeferred(_start())


_shared: dict[Any, FederationPair] = {}


def shared_federation_pair(key: Any, reactor: Any, **kwargs: Any) -> "defer.Deferred[FederationPair]":
    """A pair started once per test process for ``key`` (e.g. a test class and its kinds).

    Tests sharing it must not depend on each other's users or rooms (each makes
    its own). The pair is stopped when the process exits (``atexit``; and the
    servers die with the process through ``PR_SET_PDEATHSIG`` if it is killed).
    If a server of the pair has died, a new pair is started.
    """
    existing = _shared.get(key)
    if existing is not None and all(s.process.is_running() for s in existing.servers):
        return defer.succeed(existing)
    if existing is not None:
        existing.stop()
        del _shared[key]
    directory = tempfile.mkdtemp(prefix=f"fedpair-{next(_counter)}-", dir=os.getcwd())

    async def _start() -> FederationPair:
        pair = await start_federation_pair(directory, _sleeper(reactor), reactor, **kwargs)
        _shared[key] = pair
        return pair

    return defer.ensureDeferred(_start())


@atexit.register
def _stop_shared_pairs() -> None:
    for pair in list(_shared.values()):
        pair.stop()
    _shared.clear()


# -- Client ----------------------------------------------------------------------------------


async def _json_body(resp: Any) -> Any:
    raw = await resp.content()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return {"_raw": raw.decode("utf-8", "replace")}


class MatrixRequestError(Exception):
    def __init__(self, method: str, path: str, code: int, body: Any) -> None:
        super().__init__(f"{method} {path} -> {code}: {body}")
        self.code = code
        self.body = body

    @property
    def errcode(self) -> Optional[str]:
        return self.body.get("errcode") if isinstance(self.body, dict) else None


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


@attrs.define
class MatrixClient:
    """A logged-in user of one server of the pair (client-server API over plain HTTP)."""

    server: TestHomeserver
    user_id: str
    access_token: str
    device_id: Optional[str] = None
    password: Optional[str] = None
    # /sync position of sync and sync_until.
    since: Optional[str] = None
    _txn: Any = attrs.field(factory=lambda: itertools.count(1))

    async def request_raw(self, method: str, path: str, body: Optional[Any] = None, *,
                          query: Optional[Mapping[str, Any]] = None, timeout: float = 60) -> tuple[int, Any]:
        """``(status, json)`` of a request to the client port; ``path`` starts with ``/_matrix`` or ``/_synapse``."""
        url = self.server.client_url + path
        if query:
            url += "?" + urllib.parse.urlencode(
                [(k, v) for k, vs in query.items() for v in (vs if isinstance(vs, (list, tuple)) else [vs])]
            )
        kwargs: dict[str, Any] = {"headers": {"Authorization": f"Bearer {self.access_token}"},
                                  "persistent": False, "timeout": timeout}
        if body is not None:
            kwargs["data"] = json.dumps(body).encode()
            kwargs["headers"]["Content-Type"] = "application/json"
        resp = await treq.request(method, url, **kwargs)
        return resp.code, await _json_body(resp)

    async def request(self, method: str, path: str, body: Optional[Any] = None, *,
                      query: Optional[Mapping[str, Any]] = None, timeout: float = 60) -> Any:
        """The JSON body of a 200 answer; :class:`MatrixRequestError` otherwise."""
        code, result = await self.request_raw(method, path, body, query=query, timeout=timeout)
        if code != 200:
            raise MatrixRequestError(method, path, code, result)
        return result

    async def new_device(self) -> "MatrixClient":
        """The same user logged in again with the password: a new device and access token."""
        resp = await treq.post(self.server.client_url + "/_matrix/client/v3/login", json={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": self.user_id},
            "password": self.password,
        }, persistent=False)
        result = await _json_body(resp)
        if resp.code != 200:
            raise MatrixRequestError("POST", "/_matrix/client/v3/login", resp.code, result)
        return MatrixClient(self.server, result["user_id"], result["access_token"], result["device_id"],
                            password=self.password)

    def next_txn(self) -> str:
        return f"t{next(self._txn)}-{time.monotonic_ns()}"

    # -- rooms --

    async def create_room(self, **body: Any) -> str:
        result = await self.request("POST", "/_matrix/client/v3/createRoom", body)
        room_id: str = result["room_id"]
        return room_id

    async def join(self, room_id_or_alias: str, via: Sequence[str] = ()) -> str:
        query = {"server_name": list(via)} if via else None
        result = await self.request("POST", f"/_matrix/client/v3/join/{_q(room_id_or_alias)}", {}, query=query)
        room_id: str = result["room_id"]
        return room_id

    async def leave(self, room_id: str) -> None:
        await self.request("POST", f"/_matrix/client/v3/rooms/{_q(room_id)}/leave", {})

    async def _membership(self, action: str, room_id: str, user_id: str, reason: Optional[str]) -> None:
        body: JsonDict = {"user_id": user_id}
        if reason is not None:
            body["reason"] = reason
        await self.request("POST", f"/_matrix/client/v3/rooms/{_q(room_id)}/{action}", body)

    async def invite(self, room_id: str, user_id: str) -> None:
        await self._membership("invite", room_id, user_id, None)

    async def kick(self, room_id: str, user_id: str, reason: Optional[str] = None) -> None:
        await self._membership("kick", room_id, user_id, reason)

    async def ban(self, room_id: str, user_id: str, reason: Optional[str] = None) -> None:
        await self._membership("ban", room_id, user_id, reason)

    async def unban(self, room_id: str, user_id: str) -> None:
        await self._membership("unban", room_id, user_id, None)

    async def send(self, room_id: str, event_type: str, content: JsonDict) -> str:
        path = f"/_matrix/client/v3/rooms/{_q(room_id)}/send/{_q(event_type)}/{self.next_txn()}"
        result = await self.request("PUT", path, content)
        event_id: str = result["event_id"]
        return event_id

    async def send_text(self, room_id: str, text: str) -> str:
        return await self.send(room_id, "m.room.message", {"msgtype": "m.text", "body": text})

    async def send_state(self, room_id: str, event_type: str, content: JsonDict, state_key: str = "") -> str:
        path = f"/_matrix/client/v3/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}"
        result = await self.request("PUT", path, content)
        event_id: str = result["event_id"]
        return event_id

    async def state(self, room_id: str) -> list[JsonDict]:
        result: list[JsonDict] = await self.request("GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/state")
        return result

    async def messages(self, room_id: str, *, direction: str = "b", from_token: Optional[str] = None,
                       limit: int = 10) -> JsonDict:
        query: dict[str, Any] = {"dir": direction, "limit": limit}
        if from_token is not None:
            query["from"] = from_token
        result: JsonDict = await self.request("GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/messages", query=query)
        return result

    async def set_typing(self, room_id: str, typing: bool, timeout_ms: int = 30_000) -> None:
        body: JsonDict = {"typing": typing}
        if typing:
            body["timeout"] = timeout_ms
        await self.request("PUT", f"/_matrix/client/v3/rooms/{_q(room_id)}/typing/{_q(self.user_id)}", body)

    async def send_receipt(self, room_id: str, event_id: str, receipt_type: str = "m.read") -> None:
        await self.request(
            "POST", f"/_matrix/client/v3/rooms/{_q(room_id)}/receipt/{_q(receipt_type)}/{_q(event_id)}", {}
        )

    async def create_alias(self, alias: str, room_id: str) -> None:
        await self.request("PUT", f"/_matrix/client/v3/directory/room/{_q(alias)}", {"room_id": room_id})

    async def joined_members(self, room_id: str) -> set[str]:
        result = await self.request("GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/joined_members")
        return set(result["joined"])

    # -- sync --

    async def sync(self, timeout_ms: int = 0, filter_json: Optional[JsonDict] = None) -> JsonDict:
        """One /sync from ``self.since`` (advanced to the answer's ``next_batch``)."""
        query: dict[str, Any] = {"timeout": timeout_ms}
        if self.since is not None:
            query["since"] = self.since
        if filter_json is not None:
            query["filter"] = json.dumps(filter_json)
        result: JsonDict = await self.request("GET", "/_matrix/client/v3/sync", query=query,
                                              timeout=timeout_ms / 1000 + 30)
        self.since = result["next_batch"]
        return result

    async def sync_until(self, check: Callable[[JsonDict], Any], timeout: float = 30.0) -> Any:
        """Sync (long-polling) until ``check(sync_response)`` is truthy; returns that value.

        Raises ``AssertionError`` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            result = await self.sync(timeout_ms=max(0, int(min(remaining, 5) * 1000)))
            found = check(result)
            if found:
                return found
            if time.monotonic() >= deadline:
                raise AssertionError(f"{self.user_id}: /sync did not show what was awaited within {timeout}s")

    async def wait_for(self, check: Callable[[], Awaitable[Any]], timeout: float = 30.0,
                       interval: float = 0.2) -> Any:
        """Poll ``await check()`` until truthy (exceptions count as not yet); returns its value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        sleep = _sleeper(self.server.reactor)
        while True:
            try:
                found = await check()
                if found:
                    return found
                last = found
            except Exception as e:
                last = e
            if time.monotonic() >= deadline:
                raise AssertionError(f"{self.user_id}: not true within {timeout}s (last: {last!r})")
            await sleep(interval)


def timeline_events(sync: JsonDict, room_id: str, section: str = "join") -> list[JsonDict]:
    """The timeline events of ``room_id`` in a /sync response ([] if absent)."""
    room = sync.get("rooms", {}).get(section, {}).get(room_id, {})
    events: list[JsonDict] = room.get("timeline", {}).get("events", [])
    return events


def ephemeral_events(sync: JsonDict, room_id: str) -> list[JsonDict]:
    room = sync.get("rooms", {}).get("join", {}).get(room_id, {})
    events: list[JsonDict] = room.get("ephemeral", {}).get("events", [])
    return events
