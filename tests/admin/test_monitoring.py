"""Monitoring against real processes: the contrib dashboard and alert rules name only metrics a
running matrixd exports, and a real Prometheus (Debian's package) scrapes matrixd with the
contrib scrape config and sees request and database metrics with values.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from typing import Any, Optional

import treq
import yaml
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from matrixd.testing.ports import free_port
from matrixd.testing.process import REPO_ROOT, ServerProcess, start_matrixd_for_test

CONTRIB = os.path.join(REPO_ROOT, "contrib")
DASHBOARD = os.path.join(CONTRIB, "grafana", "matrixd-dashboard.json")
RULES = os.path.join(CONTRIB, "prometheus", "matrixd-rules.yml")
SCRAPE_CONFIG = os.path.join(CONTRIB, "prometheus", "prometheus.yml")
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

# Metrics every matrixd process must export (the list), by family name.
REQUIRED = (
    "synapse_http_server_requests_received_total", "synapse_http_server_responses_total",
    "synapse_http_server_response_time_seconds_bucket", "synapse_http_server_in_flight_requests_count",
    "synapse_storage_transaction_time_count_total", "synapse_storage_transaction_time_sum_total",
    "synapse_storage_schedule_time_bucket", "synapse_storage_events_persisted_events_sep_total",
    "matrixd_current_state_events", "matrixd_sync_requests_total", "matrixd_sync_wakeups_total",
    "synapse_notifier_users_woken_by_stream_total", "synapse_federation_transaction_queue_pending_pdus",
    "matrixd_federation_sender_queue_depth", "matrixd_federation_sender_retries_total",
    "synapse_util_caches_cache_hits", "synapse_util_caches_cache", "synapse_util_caches_cache_size",
    "python_twisted_reactor_tick_time_bucket", "python_gc_time_bucket", "python_gc_collections_total",
    "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
)

# PromQL words that look like metric names: functions, aggregations, keywords.
_PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "topk", "bottomk", "rate", "irate", "increase", "by", "without", "on",
    "ignoring", "group_left", "group_right", "histogram_quantile", "label_values", "and", "or", "unless",
    "offset", "bool", "abs", "delta", "deriv", "clamp_min", "clamp_max", "time", "vector", "scalar",
}


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label matchers, strings and grouping removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {n for n in names if n not in _PROMQL_WORDS and not re.fullmatch(r"e\d*", n)}


def contrib_metric_names() -> set[str]:
    """Every metric name queried by the Grafana dashboard and the alert rules."""
    names: set[str] = set()
    with open(DASHBOARD, encoding="utf-8") as f:
        dashboard = json.load(f)
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            names |= metric_names_in(target["expr"])
    with open(RULES, encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    for group in rules["groups"]:
        for rule in group["rules"]:
            names |= metric_names_in(rule["expr"])
    names.discard("up")  # Prometheus's own per-target series
    return names


def exported_sample_names(exposition: str) -> set[str]:
    """Sample names a scrape can contain, from the ``# TYPE`` lines (a labelled metric with no
    children yet still declares its family) and the samples themselves."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            names.add(family)
            if kind == "histogram":
                names |= {family + "_bucket", family + "_sum", family + "_count"}
            elif kind == "summary":
                names |= {family + "_sum", family + "_count"}
            elif kind == "counter" and not family.endswith("_total"):
                names.add(family + "_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


class MonitoringTests(unittest.TestCase):
    timeout = 240

    async def start_server(self) -> tuple[ServerProcess, int]:
        """A matrixd process with a dedicated ``type: metrics`` listener; returns it and the metrics port."""
        metrics_port = free_port()
        proc = await start_matrixd_for_test(self, reactor, config_overrides={
            "enable_metrics": True,
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "listeners": [
                {"port": 0, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False, "x_forwarded": False,
                 "resources": [{"names": ["client", "federation", "media", "keys"]}]},
                {"port": metrics_port, "bind_addresses": ["127.0.0.1"], "type": "metrics"},
            ],
        })
        return proc, metrics_port

    async def traffic(self, proc: ServerProcess) -> None:
        """Register, create a room, send a message and sync: requests, transactions, events, a sync."""
        base = proc.base_url
        r = await treq.post(f"{base}/_matrix/client/v3/register", json={
            "username": "watcher", "password": "pw-watcher-1", "auth": {"type": "m.login.dummy"}}, persistent=False)
        body = await r.json()
        self.assertEqual(r.code, 200, body)
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        r = await treq.post(f"{base}/_matrix/client/v3/createRoom", json={"name": "watched"}, headers=headers,
                            persistent=False)
        room_id = (await r.json())["room_id"]
        r = await treq.put(f"{base}/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1",
                           json={"msgtype": "m.text", "body": "hello"}, headers=headers, persistent=False)
        self.assertEqual(r.code, 200, await r.text())
        r = await treq.get(f"{base}/_matrix/client/v3/sync?timeout=0", headers=headers, persistent=False)
        self.assertEqual(r.code, 200)
        await r.content()

    async def scrape(self, port: int) -> str:
        r = await treq.get(f"http://127.0.0.1:{port}/metrics", persistent=False)
        self.assertEqual(r.code, 200)
        text: str = await r.text()
        return text

    async def test_contrib_names_are_exported(self) -> None:
        """Every metric the dashboard and alert rules query, and the issue's list, is in a real scrape."""
        proc, port = await self.start_server()
        await self.traffic(proc)
        exported = exported_sample_names(await self.scrape(port))
        wanted = contrib_metric_names()
        self.assertGreater(len(wanted), 20)
        self.assertEqual(sorted(wanted - exported), [], "dashboard/rules name metrics matrixd does not export")
        self.assertEqual(sorted(set(REQUIRED) - exported), [], "metrics of the issue's list are missing")

    async def test_synapse_metrics_carry_server_name(self) -> None:
        """Like Synapse's, every synapse_* sample carries server_name; process and Python metrics do not."""
        proc, port = await self.start_server()
        await self.traffic(proc)
        samples = [ln for ln in (await self.scrape(port)).splitlines() if ln and not ln.startswith("#")]
        label = f'server_name="{proc.server_name}"'
        synapse = [ln for ln in samples if ln.startswith("synapse_")]
        self.assertGreater(len(synapse), 20)
        self.assertEqual([ln for ln in synapse if label not in ln], [])
        self.assertIn("synapse_http_server_requests_received_total{", "\n".join(synapse))
        process = [ln for ln in samples if ln.startswith(("process_", "python_"))]
        self.assertGreater(len(process), 3)
        self.assertEqual([ln for ln in process if "server_name=" in ln], [])

    async def test_real_prometheus_scrapes_matrixd(self) -> None:
        """Prometheus with the contrib scrape config and rules sees the target up and metrics with values."""
        if not os.path.exists(PROMETHEUS):
            self.fail("prometheus is not installed (apt-get install prometheus; scripts/run-tests does it as root)")
        proc, metrics_port = await self.start_server()
        await self.traffic(proc)
        prom_port = free_port()
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(workdir, "data"))
        with open(SCRAPE_CONFIG, encoding="utf-8") as f:
            config: dict[str, Any] = yaml.safe_load(f)
        # The contrib config with its targets pointed at this test's process, scraped quickly.
        config["global"]["scrape_interval"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        config["rule_files"] = [RULES]
        main_job = next(job for job in config["scrape_configs"] if job["job_name"] == "matrixd-main")
        main_job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"], "labels": {"worker": "main"}}]
        config["scrape_configs"] = [main_job]
        config_path = os.path.join(workdir, "prometheus.yml")
        with open(config_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f)
        log = open(os.path.join(workdir, "prometheus.log"), "wb")
        self.addCleanup(log.close)
        prom = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config_path}", f"--storage.tsdb.path={workdir}/data",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--web.console.templates=", "--web.console.libraries=",
             "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
        )
        self.addCleanup(_stop, prom)
        api = f"http://127.0.0.1:{prom_port}/api/v1"

        async def query(q: str) -> list[Any]:
            r = await treq.get(f"{api}/query", params={"query": q}, persistent=False)
            body = await r.json()
            self.assertEqual(body.get("status"), "success", body)
            result: list[Any] = body["data"]["result"]
            return result

        deadline = time.monotonic() + 90
        target: Optional[dict[str, Any]] = None
        requests: list[Any] = []
        txns: list[Any] = []
        while time.monotonic() < deadline:
            await deferLater(reactor, 1.0, lambda: None)
            if prom.poll() is not None:
                break
            try:
                r = await treq.get(f"{api}/targets", persistent=False)
                targets = (await r.json())["data"]["activeTargets"]
            except Exception:
                continue  # not listening yet
            target = targets[0] if targets else None
            if target is None or target["health"] != "up":
                continue
            requests = await query('sum(synapse_http_server_requests_received_total{job="matrixd-main"})')
            txns = await query('sum(synapse_storage_transaction_time_count_total{job="matrixd-main"})')
            if requests and txns:
                break
        with open(os.path.join(workdir, "prometheus.log"), encoding="utf-8", errors="replace") as f:
            prom_log = f.read()[-4000:]
        self.assertIsNone(prom.poll(), f"prometheus exited:\n{prom_log}")
        self.assertIsNotNone(target, prom_log)
        assert target is not None
        self.assertEqual((target["health"], target["labels"]["job"], target["labels"]["worker"]),
                         ("up", "matrixd-main", "main"), target.get("lastError"))
        self.assertEqual([s["value"][1] for s in await query('up{job="matrixd-main"}')], ["1"])
        self.assertGreater(float(requests[0]["value"][1]), 0, requests)
        self.assertGreater(float(txns[0]["value"][1]), 0, txns)
        persisted = await query('sum(synapse_storage_events_persisted_events_sep_total{origin_type="local"})')
        self.assertGreater(float(persisted[0]["value"][1]), 0)
        durations = await query('sum(matrixd_db_txn_duration_seconds_count{job="matrixd-main"})')
        self.assertGreater(float(durations[0]["value"][1]), 0)
        # The contrib rules loaded (and evaluate without errors).
        r = await treq.get(f"{api}/rules", persistent=False)
        groups = (await r.json())["data"]["groups"]
        rules = [rule for g in groups for rule in g["rules"]]
        self.assertGreaterEqual(len(rules), 8)
        self.assertEqual([rule["name"] for rule in rules if rule.get("health") == "err"], [])


def _stop(popen: "subprocess.Popen[bytes]") -> None:
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
