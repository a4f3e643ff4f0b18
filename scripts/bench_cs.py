#!/usr/bin/env python
"""Client-server benchmark: matrixd against Synapse (or any homeserver) on loopback.

    python scripts/bench_cs.py --quick                      # smoke run, a minute or two per engine
    python scripts/bench_cs.py                              # full run, SQLite then PostgreSQL
    python scripts/bench_cs.py --engines postgres --scenarios send,fanout
    python scripts/bench_cs.py --external other http://127.0.0.1:8008 SECRET [PID] --servers other
    python scripts/bench_cs.py --quick --profile prof/      # py-spy per scenario (distorts the figures)

For each engine the selected servers are started side by side, each with a
fresh directory, generated config and database (see bench/servers.py), and
every scenario runs against each server in turn, the order alternating from
one scenario to the next. The table's ratio column is first server / last
server (matrixd / synapse by default), with the targets we hold matrixd to.
Peak RSS is the kernel's VmHWM of the server process at the end of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from typing import Any, Awaitable, Callable, Optional

import attrs

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

from bench.client import Homeserver, new_session  # noqa: E402
from bench.profiling import Recording, parse_txn_metrics, summarize, txn_delta_report  # noqa: E402
from bench.report import table  # noqa: E402
from bench.scenarios import FULL, QUICK, SCENARIOS, Metric, ServerState  # noqa: E402
from bench.servers import metrics_url, start_matrixd_bench, start_synapse  # noqa: E402
from matrixd.testing.bytecode import compile_server_bytecode  # noqa: E402
from matrixd.testing.process import ServerProcess, read_cpu_seconds, read_memory_kib  # noqa: E402

LAUNCHERS: dict[str, Callable[[str, str], Awaitable[ServerProcess]]] = {
    "matrixd": start_matrixd_bench, "synapse": start_synapse,
}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--engines", default="sqlite,postgres", help="comma list of sqlite, postgres")
    parser.add_argument("--servers", default="matrixd,synapse",
                        help="comma list; the ratio column is first/last (default matrixd,synapse)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma list, in this order: {','.join(SCENARIOS)}")
    parser.add_argument("--external", nargs="+", action="append", default=[],
                        metavar="NAME URL SECRET [PID]",
                        help="an already running server: name, base URL, registration shared secret,"
                             " and optionally its pid (for RSS and profiling)")
    parser.add_argument("--json", help="also write all figures to this JSON file")
    parser.add_argument("--profile", metavar="DIR",
                        help="record a py-spy profile of --profile-server per scenario into DIR and print a summary"
                             " (sampling slows the server: do not quote figures from such a run)")
    parser.add_argument("--profile-server", default="matrixd")
    parser.add_argument("--workdir", help="where server directories go (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep server directories (logs) afterwards")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the scenario sequence; the table shows the median of the rounds")
    parser.add_argument("--scenario-timeout", type=float, default=900.0)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=N",
                        help="override one size of the run, e.g. --set fanout_clients=50 (see bench.scenarios.Params)")
    args = parser.parse_args(argv)
    for ext in args.external:
        if len(ext) not in (3, 4):
            parser.error("--external takes NAME URL SECRET [PID]")
    return args


async def run_engine(engine: str, args: argparse.Namespace, workdir: str, out: dict[str, Any]) -> None:
    params = QUICK if args.quick else FULL
    for item in args.set:
        field, _, value = item.partition("=")
        if field not in attrs.fields_dict(type(params)) or field == "concurrency_levels":
            raise SystemExit(f"--set {item}: unknown size {field!r}")
        overrides: dict[str, Any] = {field: int(value)}
        params = attrs.evolve(params, **overrides)
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    scenario_names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenario_names if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenarios: {unknown}")
    externals = {ext[0]: ext for ext in args.external}

    procs: dict[str, ServerProcess] = {}
    pids: dict[str, int] = {}
    states: dict[str, ServerState] = {}
    sessions = []
    results: dict[str, list[Metric]] = {n: [] for n in names}
    errors: dict[str, dict[str, str]] = {n: {} for n in names}
    profiles: dict[str, str] = {}
    metric_urls: dict[str, str] = {}
    try:
        for name in names:
            if name in externals:
                ext = externals[name]
                url, secret = ext[1], ext[2]
                if len(ext) == 4:
                    pids[name] = int(ext[3])
            elif name in LAUNCHERS:
                t0 = time.perf_counter()
                directory = os.path.join(workdir, f"{engine}-{name}")
                if name == "matrixd":
                    proc = await start_matrixd_bench(directory, engine, metrics=bool(args.profile))
                    if metrics_url(proc):
                        metric_urls[name] = metrics_url(proc) or ""
                else:
                    proc = await LAUNCHERS[name](directory, engine)
                procs[name] = proc
                pids[name] = proc.pid
                url, secret = proc.base_url, proc.registration_shared_secret
                log(f"[{engine}] {name} serving at {url} (pid {proc.pid}, start {time.perf_counter() - t0:.1f}s)")
            else:
                raise SystemExit(f"unknown server {name!r}: use matrixd, synapse or --external")
            session = new_session()
            sessions.append(session)
            states[name] = ServerState(Homeserver(session, url, secret))

        step = 0
        for round_ in range(args.rounds):
            for scenario in scenario_names:
                # Alternate which server goes first, so drift in machine load evens out.
                order = names if step % 2 == 0 else list(reversed(names))
                step += 1
                for name in order:
                    if scenario in errors[name]:
                        continue
                    metrics = await run_scenario(engine, name, scenario, round_, states[name], params, args,
                                                 pids.get(name), errors[name], profiles, metric_urls.get(name))
                    results[name].extend(metrics)
        for name in names:
            if name in pids:
                mem = read_memory_kib(pids[name])
                if mem:
                    results[name].append(Metric("memory", "peak RSS (VmHWM)", mem["VmHWM"] / 1024, "MiB", "lower"))
                    results[name].append(Metric("memory", "RSS at end", mem["VmRSS"] / 1024, "MiB", "lower"))
    finally:
        for session in sessions:
            await session.close()
        for name, proc in procs.items():
            proc.stop()
    mode = "quick" if args.quick else "full"
    if args.set:
        mode += ", " + ", ".join(args.set)
    if args.scenarios != ",".join(SCENARIOS):
        mode += f", scenarios {args.scenarios}"
    print()
    rounds = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
    print(table(f"{engine} ({mode} run{rounds})", names, results))
    for name in names:
        for scenario, err in errors[name].items():
            print(f"- {name} {scenario} failed: {err[:300]}")
    for scenario, text in profiles.items():
        print(f"\n#### profile of {args.profile_server}, {engine}, {scenario}\n```\n{text}\n```")
    sys.stdout.flush()
    out[engine] = {
        "mode": mode,
        "servers": names,
        "results": {n: [attrs.asdict(m) for m in ms] for n, ms in results.items()},
        "errors": errors,
        "profiles": profiles,
    }


async def run_scenario(engine: str, name: str, scenario: str, round_: int, state: ServerState, params: Any,
                       args: argparse.Namespace, pid: Optional[int], errors: dict[str, str],
                       profiles: dict[str, str], metrics_url: Optional[str] = None) -> list[Metric]:
    """One scenario on one server: its metrics plus the server CPU time it took."""
    recording = None
    profiling = bool(args.profile) and name == args.profile_server and round_ == 0
    txns_before = await scrape_txns(state, metrics_url) if profiling and metrics_url else None
    if profiling and pid is not None:
        os.makedirs(args.profile, exist_ok=True)
        recording = Recording(pid, os.path.join(args.profile, f"{engine}-{name}-{scenario}.raw"))
        await asyncio.sleep(0.5)  # let py-spy attach
    cpu0 = read_cpu_seconds(pid) if pid is not None else None
    t0 = time.perf_counter()
    try:
        metrics = await asyncio.wait_for(SCENARIOS[scenario](state, params), args.scenario_timeout)
    except Exception as e:  # report and go on: other scenarios may still work
        errors[scenario] = f"{type(e).__name__}: {e}"
        log(f"[{engine}] {name} {scenario}: FAILED {type(e).__name__}: {e}")
        if not isinstance(e, (asyncio.TimeoutError, RuntimeError)):
            traceback.print_exc()
        return []
    finally:
        if recording is not None:
            recording.stop()
            profiles[scenario] = summarize(recording.output)
        if txns_before is not None:
            txns_after = await scrape_txns(state, metrics_url)
            if txns_after is not None:
                profiles[scenario] = profiles.get(scenario, "") + "\n" + txn_delta_report(txns_before, txns_after)
    wall = time.perf_counter() - t0
    cpu1 = read_cpu_seconds(pid) if pid is not None else None
    if cpu0 is not None and cpu1 is not None:
        metrics.append(Metric(scenario, "server CPU time (whole scenario)", cpu1 - cpu0, "s", "lower"))
    mem = read_memory_kib(pid) if pid is not None else {}
    shown = ", ".join(f"{m.name} {m.value:.1f}{m.unit}" for m in metrics)
    log(f"[{engine}] r{round_} {name} {scenario} ({wall:.1f}s): {shown}  [RSS {mem.get('VmRSS', 0) / 1024:.0f} MiB]")
    return metrics


async def scrape_txns(state: ServerState, url: Optional[str]) -> Optional[dict[str, tuple[float, float]]]:
    if not url:
        return None
    async with state.hs.session.get(url) as resp:
        return parse_txn_metrics((await resp.read()).decode())


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


async def main_async(args: argparse.Namespace) -> int:
    workdir = args.workdir or tempfile.mkdtemp(prefix="matrixd-bench-")
    os.makedirs(workdir, exist_ok=True)
    out: dict[str, Any] = {}
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    compile_server_bytecode()  # as an installed, once-started server has it (matrixd.testing.bytecode)
    if args.external and all(n in {x[0] for x in args.external} for n in args.servers.split(",")):
        engines = ["external"]
    try:
        for engine in engines:
            await run_engine(engine, args, workdir, out)
    finally:
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(out, f, indent=1)
        if args.keep:
            log(f"server directories kept in {workdir}")
        elif not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    failed = any(errs for engine in out.values() for errs in engine["errors"].values())
    return 1 if failed else 0


def main() -> None:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so the servers are stopped and their databases dropped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
