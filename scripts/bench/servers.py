"""Start matrixd or Synapse for a benchmark run: a fresh directory, a generated
config, SQLite or a fresh PostgreSQL database, relaxed rate limits, loopback only.

Both servers get the same settings where the setting exists in both (key names
are shared): rate limits out of the way, presence off, the same PostgreSQL pool
size, no outbound key-server traffic. Synapse's completed-``/sync`` response
cache is set to 0 so repeated identical initial syncs are computed, as they are
on matrixd.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from typing import Any, Mapping, Optional

import aiohttp
import yaml

from matrixd.testing.ports import free_port
from matrixd.testing.process import (
    RELAXED_RATELIMITS, ServerProcess, create_postgres_database, spawn_logged, start_matrixd,
)

# Settings applied to both servers.
COMMON_SETTINGS: dict[str, Any] = {
    **RELAXED_RATELIMITS,
    "rc_room_creation": {"per_second": 1e6, "burst_count": 1e6},
    "rc_presence": {"per_user": {"per_second": 1e6, "burst_count": 1e6}},
    "presence": {"enabled": False},
    "enable_registration": False,
    "max_upload_size": "50M",
}
PG_POOL = {"cp_min": 5, "cp_max": 10}


def _pg_database_config(db: Any) -> dict[str, Any]:
    return {"name": "psycopg2", "args": {**db.connect_args(), **PG_POOL}}


async def start_matrixd_bench(directory: str, engine: str, python_args: tuple[str, ...] = (),
                              metrics: bool = False) -> ServerProcess:
    """matrixd with the common settings, its stderr (INFO logs) in ``matrixd.log``.

    With ``metrics`` a Prometheus listener (port 0) is added; its address is in
    ``proc.ready["listeners"]`` (the profile mode reads database transaction
    counts from it between scenarios).
    """
    overrides = dict(COMMON_SETTINGS)
    if metrics:
        overrides["enable_metrics"] = True
        overrides["listeners"] = [
            {"port": 0, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False, "x_forwarded": False,
             "resources": [{"names": ["client", "federation", "media", "keys"]}]},
            {"port": 0, "bind_addresses": ["127.0.0.1"], "type": "metrics"},
        ]
    return await start_matrixd(
        directory, asyncio.sleep, engine=engine, config_overrides=overrides, python_args=python_args,
        timeout=120, pg_pool=(PG_POOL["cp_min"], PG_POOL["cp_max"]),
    )


def metrics_url(proc: ServerProcess) -> Optional[str]:
    """The /metrics URL of a matrixd started with ``metrics=True`` (None otherwise)."""
    for listener in proc.ready.get("listeners", []):
        if listener.get("type") == "metrics":
            return f"http://127.0.0.1:{listener['port']}/metrics"
    return None


async def start_synapse(directory: str, engine: str, python_args: tuple[str, ...] = (),
                        extra: Optional[Mapping[str, Any]] = None) -> ServerProcess:
    """Synapse (from the venv) on a free loopback port; ready once /versions answers."""
    os.makedirs(directory, exist_ok=True)
    config_path = os.path.join(directory, "homeserver.yaml")
    data_dir = os.path.join(directory, "data")
    subprocess.run(
        [sys.executable, "-m", "synapse.app.homeserver", "--generate-config", "-H", "localhost",
         "-c", config_path, "--report-stats=no", "--data-directory", data_dir],
        cwd=directory, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    with open(config_path, encoding="utf-8") as f:
        raw: dict[str, Any] = yaml.safe_load(f)
    port = free_port()
    secret = secrets.token_urlsafe(24)
    raw["listeners"] = [{
        "port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False, "x_forwarded": False,
        "resources": [{"names": ["client", "federation"], "compress": False}],
    }]
    raw["registration_shared_secret"] = secret
    raw["trusted_key_servers"] = []
    raw["suppress_key_server_warning"] = True
    raw["caches"] = {"sync_response_cache_duration": 0}
    raw.update(COMMON_SETTINGS)
    database = None
    if engine == "postgres":
        database = create_postgres_database("matrixd_tbenchs")
        raw["database"] = _pg_database_config(database)
    raw.update(extra or {})
    with open(config_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(raw, f)
    log_path = os.path.join(directory, "synapse.stderr.log")
    popen = spawn_logged([sys.executable, *python_args, "-m", "synapse.app.homeserver", "-c", config_path],
                         directory, log_path)
    proc = ServerProcess(popen=popen, directory=directory, log_path=log_path, base_url=f"http://127.0.0.1:{port}",
                         server_name="localhost", registration_shared_secret=secret, database=database)
    try:
        await wait_until_serving(proc, timeout=180)
    except BaseException:
        proc.stop(2)
        raise
    return proc


async def wait_until_serving(proc: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if not proc.is_running():
                raise RuntimeError(f"server exited with {proc.popen.returncode}:\n{proc.log_tail()}")
            try:
                async with session.get(proc.base_url + "/_matrix/client/versions",
                                       timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server not serving after {timeout}s:\n{proc.log_tail()}")
