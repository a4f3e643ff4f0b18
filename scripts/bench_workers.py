#!/usr/bin/env python
"""Workers benchmark: a monolith vs master + 2 sync workers, both behind nginx, on PostgreSQL.

    python scripts/bench_workers.py                 # 200 long-polling clients, figures as in docs/workers.md
    python scripts/bench_workers.py --quick         # smoke run
    python scripts/bench_workers.py --set fanout_clients=50 --replication-samples 500

Each layout is started with the multi-process test harness
(``tests/workers/deployment.py``: scripts/matrixdctl, contrib/nginx's
template, a fresh PostgreSQL database) and the repo's benchmark scenarios
(``scripts/bench``) run against nginx: ``register``, ``send`` (sustained send
throughput, sequential and N in flight) and ``fanout`` (one sender, N
long-polling ``/sync`` clients; with workers the clients are spread over the
sync workers by access token and the sends go to the master).

``replication`` measures commit on the master -> visible on a worker: a client
long-polls ``/sync`` directly on the worker (or, for the monolith, on the
master) while another sends directly to the master; per message it records
the time from the start of the PUT to the PUT's answer (the event is
committed and announced by then) and to the ``/sync`` answer carrying it.
``visible - ack`` is the replication figure (TCP stream, worker dispatcher,
``/sync`` wake-up and answer); the monolith's value of the same difference is
the in-process baseline. Negative differences (the worker's answer arrived
before the PUT's) count as 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Optional

import attrs

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

from bench.client import Homeserver, User, new_session  # noqa: E402
from bench.scenarios import FULL, QUICK, Metric, Params, ServerState, fanout, percentile, register, send  # noqa: E402
from tests.workers.deployment import Deployment  # noqa: E402

SECRET = "bench workers registration secret"


class _Harness:
    """What :class:`Deployment` needs of a test case: a temp dir and cleanups (run in reverse on close)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.cleanups: list[Callable[[], Any]] = []

    def mktemp(self) -> str:
        return tempfile.mkdtemp(dir=self.root)

    def addCleanup(self, fn: Callable[..., Any], *args: Any) -> None:
        self.cleanups.append(lambda: fn(*args))

    def close(self) -> None:
        while self.cleanups:
            try:
                self.cleanups.pop()()
            except Exception as e:  # keep cleaning up
                print(f"cleanup failed: {e}", file=sys.stderr)


async def replication_latency(hs: Homeserver, sender: User, reader: User, reader_base: str, master_base: str,
                              samples: int) -> list[Metric]:
    room = await sender.create_room({"preset": "public_chat"})
    await reader.join(room)
    filt = json.dumps({"room": {"rooms": [room], "timeline": {"limit": 5}}, "presence": {"types": []}})
    direct_sync = Homeserver(hs.session, reader_base, hs.shared_secret)
    direct_send = Homeserver(hs.session, master_base, hs.shared_secret)
    since = (await direct_sync.request("GET", "/_matrix/client/v3/sync", token=reader.token,
                                       params={"filter": filt}))["next_batch"]
    gaps: list[float] = []
    visible: list[float] = []
    for i in range(samples):
        marker = f"repl {i}"
        poll = asyncio.ensure_future(direct_sync.request(
            "GET", "/_matrix/client/v3/sync", token=reader.token,
            params={"filter": filt, "since": since, "timeout": "30000"}))
        await asyncio.sleep(0.02)  # let the long-poll park
        t0 = time.perf_counter()
        await direct_send.request("PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/r{i}-{time.time_ns()}",
                                  {"msgtype": "m.text", "body": marker}, token=sender.token)
        t_ack = time.perf_counter()
        while True:
            data = await poll
            t_seen = time.perf_counter()
            since = data["next_batch"]
            bodies = [e.get("content", {}).get("body") for e in
                      data.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {}).get("events", [])]
            if marker in bodies:
                break
            poll = asyncio.ensure_future(direct_sync.request(
                "GET", "/_matrix/client/v3/sync", token=reader.token,
                params={"filter": filt, "since": since, "timeout": "30000"}))
        gaps.append(max(0.0, t_seen - t_ack) * 1000)
        visible.append((t_seen - t0) * 1000)
    return [
        Metric("replication", "ack -> visible p50", percentile(gaps, 50), "ms", "lower"),
        Metric("replication", "ack -> visible p99", percentile(gaps, 99), "ms", "lower"),
        Metric("replication", "send -> visible p50", percentile(visible, 50), "ms", "lower"),
        Metric("replication", "send -> visible p99", percentile(visible, 99), "ms", "lower"),
    ]


class ReplicationProbe:
    """A pseudo-worker on the master's TCP replication port (real handshake, ``SUBSCRIBE events``).

    It records when each events ``RDATA`` line arrives, by event id: the moment a
    worker's connection has the row (a worker applies it in the same turn).
    """

    def __init__(self, host: str, port: int, server_name: str, secret: str) -> None:
        self.host, self.port, self.server_name, self.secret = host, port, server_name, secret
        self.arrived: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future[float]] = {}
        self._task: Optional[asyncio.Task[None]] = None

    async def start(self) -> None:
        from matrixd.replication import commands as c

        reader, writer = await asyncio.open_connection(self.host, self.port)
        hello = c.parse_line((await reader.readline()).decode().rstrip("\n"))
        assert isinstance(hello, c.HelloCommand), hello
        mac = c.auth_mac(self.secret, protocol_version=hello.protocol_version, server_name=hello.server_name,
                         master_epoch=hello.master_epoch, nonce=hello.nonce, worker_name="benchprobe")
        writer.write((c.AuthCommand("benchprobe", mac).to_line() + "\n").encode())
        welcome = c.parse_line((await reader.readline()).decode().rstrip("\n"))
        assert isinstance(welcome, c.WelcomeCommand), welcome
        writer.write((c.SubscribeCommand("events").to_line() + "\n").encode())
        self._writer = writer

        async def read() -> None:
            while True:
                line = await reader.readline()
                if not line:
                    return
                now = time.perf_counter()
                cmd = c.parse_line(line.decode().rstrip("\n"))
                if isinstance(cmd, c.PingCommand):
                    writer.write((c.PingCommand(int(time.time() * 1000)).to_line() + "\n").encode())
                elif isinstance(cmd, c.RdataCommand) and cmd.stream == "events":
                    for row in cmd.rows:
                        event_id = row.get("event_id")
                        if isinstance(event_id, str):
                            self.arrived[event_id] = now
                            fut = self.waiters.pop(event_id, None)
                            if fut is not None and not fut.done():
                                fut.set_result(now)

        self._task = asyncio.ensure_future(read())

    async def wait(self, event_id: str, timeout: float = 30.0) -> float:
        if event_id in self.arrived:
            return self.arrived[event_id]
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters[event_id] = fut
        return await asyncio.wait_for(fut, timeout)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._writer.close()


async def replication_stream_latency(d: Deployment, sender: User, master_base: str, samples: int) -> list[Metric]:
    """Send on the master; time the events RDATA's arrival on a worker connection."""
    from tests.workers.deployment import SECRET as REPL_SECRET, SERVER_NAME

    probe = ReplicationProbe("127.0.0.1", d.ports["main_repl"], SERVER_NAME, REPL_SECRET)
    await probe.start()
    direct = Homeserver(sender.hs.session, master_base, sender.hs.shared_secret)
    room = await sender.create_room({"preset": "private_chat"})
    after_ack: list[float] = []
    after_start: list[float] = []
    try:
        for i in range(samples):
            t0 = time.perf_counter()
            answer = await direct.request("PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/p{i}",
                                          {"msgtype": "m.text", "body": f"probe {i}"}, token=sender.token)
            t_ack = time.perf_counter()
            t_rdata = await probe.wait(answer["event_id"])
            after_ack.append((t_rdata - t_ack) * 1000)
            after_start.append((t_rdata - t0) * 1000)
    finally:
        probe.close()
    return [
        Metric("replication", "RDATA after PUT answer p50", percentile(after_ack, 50), "ms", "lower"),
        Metric("replication", "RDATA after PUT answer p99", percentile(after_ack, 99), "ms", "lower"),
        Metric("replication", "PUT start -> RDATA p50", percentile(after_start, 50), "ms", "lower"),
        Metric("replication", "PUT start -> RDATA p99", percentile(after_start, 99), "ms", "lower"),
    ]


async def run_layout(d: Deployment, p: Params, samples: int, scenarios: set[str]) -> list[Metric]:
    metrics: list[Metric] = []
    async with new_session() as session:
        hs = Homeserver(session, d.base(), SECRET)
        state = ServerState(hs)
        metrics += await register(state, p)
        if "send" in scenarios:
            metrics += await send(state, p)
        if "fanout" in scenarios:
            metrics += await fanout(state, p)
        if "replication" in scenarios:
            reader_base = d.base(d.sync_names[0]) if d.sync_names else d.base("main")
            metrics += await replication_latency(hs, state.users[0], state.users[1], reader_base, d.base("main"),
                                                 samples)
            metrics += await replication_stream_latency(d, state.users[0], d.base("main"), samples)
    return metrics


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sync-workers", type=int, default=2)
    parser.add_argument("--replication-samples", type=int, default=300)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=N")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the deployments' directories (logs)")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="also run the monolith from another checkout (e.g. /work/main) first, for comparison")
    parser.add_argument("--layouts", default="monolith,workers",
                        help="comma list of baseline (needs --baseline), monolith, workers; repeats allowed"
                             " (e.g. baseline,monolith,baseline,monolith for an interleaved A/B)")
    parser.add_argument("--scenarios", default="send,fanout,replication", help="comma list of send,fanout,replication")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else attrs.evolve(FULL, fanout_clients=200, users=202, send_sequential=1000,
                                                 send_concurrent=1000)
    changes = {}
    for item in args.set:
        field, _, value = item.partition("=")
        changes[field] = int(value)
    p = attrs.evolve(base, **changes)
    if p.users < p.fanout_clients + 2:
        p = attrs.evolve(p, users=p.fanout_clients + 2)
    samples = 50 if args.quick and args.replication_samples == 300 else args.replication_samples

    root = tempfile.mkdtemp(prefix="bench_workers_")
    results: dict[str, list[Metric]] = {}
    try:
        kinds = {"baseline": ("monolith (baseline)", 0, args.baseline), "monolith": ("monolith", 0, None),
                 "workers": (f"{args.sync_workers} sync workers", args.sync_workers, None)}
        wanted = args.layouts.split(",")
        if args.baseline and "baseline" not in wanted:
            wanted.insert(0, "baseline")
        layouts: list[tuple[str, int, Optional[str]]] = []
        for i, kind in enumerate(wanted):
            name, sync_workers, source = kinds[kind]
            if kind == "baseline" and not source:
                parser.error("the baseline layout needs --baseline CHECKOUT")
            layouts.append((name if wanted.count(kind) == 1 else f"{name} #{wanted[:i + 1].count(kind)}",
                            sync_workers, source))
        for name, sync_workers, source in layouts:
            harness = _Harness(root)
            try:
                d = Deployment(harness, sync_workers=sync_workers, other_workers=False,  # type: ignore[arg-type]
                               extra_config={"registration_shared_secret": SECRET}, source=source)
                d.start()
                print(f"{name}: running", file=sys.stderr)
                results[name] = asyncio.run(run_layout(d, p, samples, set(args.scenarios.split(","))))
            finally:
                harness.close()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}", file=sys.stderr)
    names = list(results)
    print(_plain(results, names))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({n: [attrs.asdict(m) for m in ms] for n, ms in results.items()}, f, indent=2)
    return 0


def _plain(results: dict[str, list[Metric]], names: list[str]) -> str:
    rows = [f"| scenario | figure | {' | '.join(names)} | ratio (last/first) |", "|---|---|" + "---|" * len(names) + "---|"]
    first = results[names[0]]
    for i, m in enumerate(first):
        values = [results[n][i].value for n in names]
        ratio = values[-1] / values[0] if values[0] else float("nan")
        rows.append(f"| {m.scenario} | {m.name} ({m.unit}) | " + " | ".join(f"{v:.1f}" for v in values)
                    + f" | {ratio:.2f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
