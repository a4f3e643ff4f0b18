#!/usr/bin/env python
"""Remote join benchmark: matrixd <-> matrixd next to Synapse <-> Synapse.

For each kind, a pair of real federating servers is started on loopback with
TLS (``matrixd.testing.federation_pair``). On the first (hosting) server, a
public room is created per size and filled with that many real local users
(shared-secret registration, then joins, ``--setup-concurrency`` at a time;
this setup is not measured). Then a user of the second server joins each room
by id through the host; the kinds alternate (size by size, round by round) in
one run on the same machine, each join starting once all four servers are idle
(the previous join's background work done), with the other kind's two servers
paused (SIGSTOP, then SIGCONT) while it runs.

Measured per join:

* ``join``: wall time of ``POST /join`` on the joining server until it
  answers 200;
* ``full``: until the joining server's ``/joined_members`` lists every member.
  Both matrixd and Synapse join with partial state (``send_join`` with
  ``omit_members=true``, MSC3706 "faster joins"), answer ``/join`` once that
  is stored and fetch the members in the background, so ``full`` is later
  (matrixd's ``/joined_members`` waits for the resync rather than answering
  with a partial list);
* peak RSS (``/proc/<pid>/status`` VmRSS sampled every 10 ms) of the joining
  and the hosting server from the start of the join until ``full``.

The table prints matrixd's figures next to Synapse's with the ratios and the
targets: matrixd at least 3x faster and its memory during the join at most half
of Synapse's.

    /work/venv/bin/python scripts/bench_join.py                       # 500 and 2000 members, SQLite
    /work/venv/bin/python scripts/bench_join.py --sizes 100 --rounds 1  # smoke run
    /work/venv/bin/python scripts/bench_join.py --engine postgres --rounds 2 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Coroutine, Iterator, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, task  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402

from matrixd.testing.bytecode import compile_server_bytecode  # noqa: E402
from matrixd.testing.federation_pair import (  # noqa: E402
    FederationPair, MatrixClient, MatrixRequestError, start_federation_pair,
)

KINDS = ("matrixd", "synapse")
TARGET_SPEEDUP = 3.0
TARGET_MEMORY = 0.5

# Both servers: cheap password hashing, so creating thousands of members is quick.
EXTRA_CONFIG: dict[str, Any] = {"bcrypt_rounds": 4}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> Optional[int]:
    """Resident set size of ``pid`` in KiB (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """Peak VmRSS of some processes, sampled on the reactor every ``interval`` seconds."""

    def __init__(self, reactor: Any, pids: dict[str, int], interval: float = 0.01) -> None:
        self.peaks: dict[str, int] = {name: rss_kib(pid) or 0 for name, pid in pids.items()}
        self._pids = pids
        self._loop = task.LoopingCall(self._sample)
        self._loop.clock = reactor
        self._loop.start(interval, now=True)

    def _sample(self) -> None:
        for name, pid in self._pids.items():
            rss = rss_kib(pid)
            if rss is not None and rss > self.peaks[name]:
                self.peaks[name] = rss

    def stop(self) -> dict[str, int]:
        self._sample()
        if self._loop.running:
            self._loop.stop()
        return self.peaks


async def gather_limited(n: int, thunks: list[Callable[[], Coroutine[Any, Any, Any]]]) -> list[Any]:
    """Run the coroutine factories ``thunks``, at most ``n`` at a time."""
    sem = defer.DeferredSemaphore(n)
    return list(await defer.gatherResults([sem.run(t) for t in thunks], consumeErrors=True))


class KindSetup:
    """One kind's pair, its rooms (per size and round) and the joining users."""

    def __init__(self, kind: str, pair: FederationPair) -> None:
        self.kind = kind
        self.pair = pair
        self.rooms: dict[tuple[int, int], str] = {}
        self.members: list[MatrixClient] = []
        self.creator: Optional[MatrixClient] = None

    async def build(self, sizes: list[int], rounds: int, concurrency: int, log: Callable[[str], None]) -> None:
        host = self.pair.first
        t0 = time.monotonic()
        self.creator = await host.register("creator")
        largest = max(sizes)
        # The creator is a member too: a room of N members has N - 1 others.
        self.members = list(await gather_limited(concurrency, [
            functools.partial(host.register, f"member{i}") for i in range(largest - 1)
        ]))
        log(f"{self.kind}: registered {largest} users in {time.monotonic() - t0:.0f}s")
        for size in sizes:
            for r in range(rounds):
                t0 = time.monotonic()
                room_id = await self.creator.create_room(preset="public_chat", name=f"bench {size} #{r}")
                await gather_limited(concurrency, [
                    functools.partial(m.join, room_id) for m in self.members[: size - 1]
                ])
                self.rooms[(size, r)] = room_id
                log(f"{self.kind}: room of {size} members ready in {time.monotonic() - t0:.0f}s")


def _py_spy() -> str:
    """py-spy on the PATH, else the one installed next to this interpreter (the venv)."""
    return shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")


def start_profilers(pids: dict[str, int], directory: str, label: str) -> list["subprocess.Popen[bytes]"]:
    """py-spy sampling each of ``pids`` into ``<directory>/<label>-<name>.txt`` (collapsed stacks)."""
    os.makedirs(directory, exist_ok=True)
    return [
        subprocess.Popen(
            [_py_spy(), "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--nonblocking", "--threads",
             "--output", os.path.join(directory, f"{label}-{name}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]


def stop_profilers(profilers: list["subprocess.Popen[bytes]"]) -> None:
    for p in profilers:
        p.send_signal(signal.SIGINT)
    for p in profilers:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@contextlib.contextmanager
def paused(pids: list[int]) -> Iterator[None]:
    """Stop ``pids`` (SIGSTOP) for the block, and always continue them (SIGCONT) after it."""
    stopped = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


async def wait_until_idle(reactor: Any, pids: list[int], *, window: float = 0.5, busy_cpu: float = 0.05,
                          timeout: float = 30.0) -> None:
    """Wait until ``pids`` together used under ``busy_cpu`` CPU seconds in a ``window`` (or ``timeout``):
    a server still busy after the previous join (the other kind's, say) would slow this one down."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(pid) for pid in pids)
        await deferLater(reactor, window, lambda: None)
        if sum(cpu_seconds(pid) for pid in pids) - before < busy_cpu:
            return


async def measure_join(reactor: Any, setup: KindSetup, joiner: MatrixClient, room_id: str, size: int,
                       timeout: float, profile_dir: Optional[str] = None) -> dict[str, Any]:
    """Time ``joiner``'s join of ``room_id`` and the peak RSS of both servers until it has every member."""
    pair = setup.pair
    pids = {"joining": pair.second.process.popen.pid, "hosting": pair.first.process.popen.pid}
    before = {name: rss_kib(pid) or 0 for name, pid in pids.items()}
    profilers = start_profilers(pids, profile_dir, f"{setup.kind}-{size}") if profile_dir else []
    if profilers:
        await deferLater(reactor, 1.0, lambda: None)  # let py-spy attach
    sampler = RssSampler(reactor, pids)
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    try:
        t0 = time.monotonic()
        await joiner.join(room_id, via=[pair.first.server_name])
        joined = time.monotonic() - t0

        async def everyone() -> bool:
            try:
                return len(await joiner.joined_members(room_id)) >= size + 1
            except MatrixRequestError:
                return False

        await joiner.wait_for(everyone, timeout=timeout, interval=0.05)
        full = time.monotonic() - t0
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    finally:
        peaks = sampler.stop()
        stop_profilers(profilers)
    return {"join_s": joined, "full_s": full, "joining_cpu_s": cpu["joining"], "hosting_cpu_s": cpu["hosting"],
            "joining_rss_peak_kib": peaks["joining"], "hosting_rss_peak_kib": peaks["hosting"],
            "joining_rss_before_kib": before["joining"], "hosting_rss_before_kib": before["hosting"]}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def format_table(results: dict[str, dict[int, list[dict[str, Any]]]], sizes: list[int]) -> str:
    rows = [("members", "figure", "matrixd", "synapse", "ratio", "target", "ok")]
    for size in sizes:
        m, s = results["matrixd"].get(size, []), results["synapse"].get(size, [])
        if not m or not s:
            continue
        for r in (*m, *s):
            r["joining_rss_growth_kib"] = r["joining_rss_peak_kib"] - r["joining_rss_before_kib"]
        for key, label, unit in (("join_s", "join answered", "s"), ("full_s", "full state", "s"),
                                 ("joining_cpu_s", "CPU joining", "s"), ("hosting_cpu_s", "CPU hosting", "s"),
                                 ("joining_rss_peak_kib", "RSS joining (peak)", "MiB"),
                                 ("joining_rss_growth_kib", "RSS joining (growth)", "MiB"),
                                 ("hosting_rss_peak_kib", "RSS hosting (peak)", "MiB")):
            mv = _median([r[key] for r in m])
            sv = _median([r[key] for r in s])
            if unit == "MiB":
                mv, sv = mv / 1024, sv / 1024
                ratio = mv / sv if sv else float("nan")
                target = f"<= {TARGET_MEMORY:g}x" if key == "joining_rss_peak_kib" else ""
                ok = ("yes" if ratio <= TARGET_MEMORY else "NO") if target else ""
                rows.append((str(size), label, f"{mv:.1f} MiB", f"{sv:.1f} MiB", f"{ratio:.2f}x", target, ok))
            else:
                speedup = sv / mv if mv else float("nan")
                target = f">= {TARGET_SPEEDUP:g}x faster" if key.endswith("_s") and "cpu" not in key else ""
                ok = ("yes" if speedup >= TARGET_SPEEDUP else "NO") if target else ""
                rows.append((str(size), label, f"{mv:.2f} s", f"{sv:.2f} s", f"{speedup:.2f}x faster", target, ok))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def run(reactor: Any, args: argparse.Namespace) -> int:
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    if min(sizes) < 2:
        raise SystemExit("--sizes: a room needs at least 2 members")
    workdir = tempfile.mkdtemp(prefix="bench-join-", dir=args.workdir)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def sleep(seconds: float) -> "defer.Deferred[None]":
        return deferLater(reactor, seconds, lambda: None)

    compile_server_bytecode()  # as an installed, once-started server has it (matrixd.testing.bytecode)
    setups: dict[str, KindSetup] = {}
    joiners: dict[str, MatrixClient] = {}
    kinds = tuple(k for k in KINDS if k in args.kinds.split(","))
    results: dict[str, dict[int, list[dict[str, Any]]]] = {k: {} for k in KINDS}
    try:
        for kind in kinds:
            pair = await start_federation_pair(
                os.path.join(workdir, kind), sleep, reactor, kinds=(kind, kind), engine=args.engine,
                synapse_engine=args.engine, extra_config={"a": EXTRA_CONFIG, "b": EXTRA_CONFIG},
            )
            setups[kind] = KindSetup(kind, pair)
            log(f"{kind}: pair started ({pair.first.server_name} hosts, {pair.second.server_name} joins)")
            await setups[kind].build(sizes, args.rounds, args.setup_concurrency, log)
            joiners[kind] = await pair.second.register("joiner")
        for r in range(args.rounds):
            for size in sizes:
                order = kinds if (r + sizes.index(size)) % 2 == 0 else tuple(reversed(kinds))
                for kind in order:
                    setup = setups[kind]
                    await wait_until_idle(reactor, [p for st in setups.values() for p in (
                        st.pair.first.process.popen.pid, st.pair.second.process.popen.pid)])
                    # The other kind's servers are paused while this kind joins: on two cores, a
                    # timer or a late background task of theirs would otherwise land in this join.
                    others = [p for other, st in setups.items() if other != kind for p in (
                        st.pair.first.process.popen.pid, st.pair.second.process.popen.pid)]
                    with paused(others):
                        figures = await measure_join(reactor, setup, joiners[kind], setup.rooms[(size, r)],
                                                     size, args.timeout, args.profile)
                    results[kind].setdefault(size, []).append(figures)
                    log(f"{kind}: {size} members round {r}: join {figures['join_s']:.2f}s, "
                        f"full {figures['full_s']:.2f}s, CPU joining {figures['joining_cpu_s']:.2f}s hosting "
                        f"{figures['hosting_cpu_s']:.2f}s, joining RSS peak "
                        f"{figures['joining_rss_peak_kib'] / 1024:.0f} MiB "
                        f"(from {figures['joining_rss_before_kib'] / 1024:.0f}), hosting "
                        f"{figures['hosting_rss_peak_kib'] / 1024:.0f} MiB")
    finally:
        for setup in setups.values():
            setup.pair.stop()
        if args.keep:
            log(f"server directories kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"Remote join, {args.engine}, {args.rounds} round(s) (medians); setup not measured.")
    if len(kinds) == 2:
        print(format_table(results, sizes))
    else:
        for size, per_size in sorted(results[kinds[0]].items()):
            print(f"{kinds[0]} {size} members: " + ", ".join(
                f"{k} {_median([fig[k] for fig in per_size]):.2f}" for k in ("join_s", "full_s", "joining_cpu_s"))
                + ", joining RSS peak "
                f"{_median([fig['joining_rss_peak_kib'] for fig in per_size]) / 1024:.1f} MiB")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"engine": args.engine, "rounds": args.rounds, "sizes": sizes, "results": results}, f,
                      indent=2)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="500,2000", help="room sizes in members, comma-separated")
    parser.add_argument("--rounds", type=int, default=1, help="joins per size and kind (a new room each)")
    parser.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite",
                        help="database of all four servers")
    parser.add_argument("--setup-concurrency", type=int, default=16, help="registrations/joins at once in setup")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the full member list")
    parser.add_argument("--kinds", default="matrixd,synapse",
                        help="which pairs to run (one kind alone: its figures, no comparison)")
    parser.add_argument("--json", help="write the raw figures here")
    parser.add_argument("--profile", metavar="DIR",
                        help="sample both servers with py-spy during each join (collapsed stacks in DIR)")
    parser.add_argument("--workdir", default=None, help="parent of the servers' directories (default: /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the servers' directories (configs, logs)")
    args = parser.parse_args()

    def _main(reactor: Any) -> "defer.Deferred[int]":
        return defer.ensureDeferred(run(reactor, args))

    task.react(_main)


if __name__ == "__main__":
    main()
