"""Per-scenario CPU profiles of a server process with py-spy, and a summary of them.

``py-spy record --format raw`` writes collapsed stacks ("frame;frame;... count",
root first); idle threads are left out, so the samples are where the process
spent CPU (or held the GIL). The summary gives the top functions by self time
and the top matrixd modules by inclusive time.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
from typing import Optional

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy_path() -> Optional[str]:
    """py-spy next to the running interpreter, or on PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return candidate if os.path.exists(candidate) else shutil.which("py-spy")


class Recording:
    """A running ``py-spy record`` on one pid; ``stop()`` flushes the file."""

    def __init__(self, pid: int, output: str, rate: int = 250) -> None:
        exe = py_spy_path()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self.output = output
        self.log = open(output + ".log", "wb")
        self.popen = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--nonblocking", "--threads",
             "--output", output],
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()


def _short_file(path: str) -> str:
    for marker in ("/matrixd/", "/site-packages/", "/lib/python3"):
        i = path.rfind(marker)
        if i >= 0:
            return path[i + 1:]
    return path


def _module_of(frame: str) -> Optional[str]:
    m = _FRAME.match(frame)
    if not m:
        return None
    path = m.group("file")
    if not path.startswith("matrixd/"):
        i = path.rfind("/matrixd/")
        if i < 0:
            return None
        path = path[i + 1:]
    return path.removesuffix(".py").replace("/", ".")


# Leaf frames that are a thread waiting, not working (py-spy's idle detection
# misses them when sampling with --nonblocking).
_IDLE_LEAVES = ("EPollReactor.doPoll (", "Condition.wait (", "Queue.get (", "Event.wait (", "Thread.join (")


class _Tally:
    def __init__(self) -> None:
        self.total = 0
        self.idle = 0
        self.self_time: collections.Counter[str] = collections.Counter()
        self.modules: collections.Counter[str] = collections.Counter()
        self.buckets: collections.Counter[str] = collections.Counter()

    def add(self, frames: list[str], count: int) -> None:
        self.total += count
        leaf = frames[-1]
        if leaf.startswith(_IDLE_LEAVES):
            self.idle += count
            return
        m = _FRAME.match(leaf)
        label = f"{m.group('func')} ({_short_file(m.group('file'))}:{m.group('line') or '?'})" if m else leaf
        if "_UnixWaker.wakeUp" in ";".join(frames[-3:]):
            label = "callFromThread wake-up write (thread hand-off)"
        self.self_time[label] += count
        for mod in {mm for mm in (_module_of(fr) for fr in frames) if mm}:
            self.modules[mod] += count
        joined = ";".join(frames)
        for name, needles in _BUCKETS:
            if any(n in joined for n in needles):
                self.buckets[name] += count

    def render(self, title: str, top: int) -> list[str]:
        busy = self.total - self.idle
        if self.total == 0:
            return [f"  {title}: no samples"]
        out = [f"  {title}: {self.total} samples, {100 * busy / self.total:.0f}% busy"]
        if busy == 0:
            return out

        def pct(n: int) -> str:
            return f"{100 * n / busy:5.1f}%"

        out.append("    top self time (% of busy):")
        out += [f"      {pct(n)}  {label}" for label, n in self.self_time.most_common(top)]
        out.append("    matrixd modules, inclusive (% of busy):")
        out += [f"      {pct(n)}  {mod}" for mod, n in self.modules.most_common(top)]
        out.append("    buckets, inclusive (% of busy, may overlap):")
        out += [f"      {pct(n)}  {name}" for name, n in self.buckets.most_common() if n]
        return out


def summarize(path: str, top: int = 12) -> str:
    """A text summary of one raw py-spy file (recorded with ``--threads``), for
    the reactor thread and the other threads (database pool) apart: how busy
    each was, the top functions by self time, the matrixd modules by inclusive
    time and coarse buckets (storage, JSON, signing/hashing, bcrypt, Twisted
    HTTP, auth/state, logging).
    """
    reactor_thread, others = _Tally(), _Tally()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        return f"(no profile: {e})"
    for line in lines:
        stack, _, count_s = line.rstrip("\n").rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        frames = stack.split(";")
        thread = "?"
        if frames[0].startswith("thread ("):
            thread = frames[0].partition(": ")[2]
            frames = frames[1:] or frames
        (reactor_thread if thread == "MainThread" else others).add(frames, int(count_s))
    return "\n".join(reactor_thread.render("reactor thread", top) + others.render("other threads (DB pool)", top))


_BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("matrixd.storage", ("matrixd/storage/",)),
    ("database driver calls (execute/fetch/commit)", ("Cursor.execute", "fetchall (", "fetchone (",
                                                     "Database._run_txn (matrixd/storage/database.py:306)")),
    ("JSON encode/decode", ("canonicaljson", "json/")),
    ("signing/hashing", ("nacl", "signedjson", "hashlib", "events/hashing", "events/signing")),
    ("bcrypt", ("bcrypt", "passwords.py")),
    ("twisted.web (HTTP parsing/writing)", ("twisted/web/",)),
    ("matrixd.state (auth rules, state res)", ("matrixd/state/",)),
    ("matrixd.handlers.sync", ("matrixd/handlers/sync/",)),
    ("matrixd.http (servlet glue, access log)", ("matrixd/http/",)),
    ("logging", ("logging/",)),
    ("prometheus metrics", ("prometheus_client",)),
]


_TXN_LINE = re.compile(r'^matrixd_db_txn_duration_seconds_(count|sum)\{desc="(?P<desc>[^"]*)"\} (?P<value>\S+)$')


def parse_txn_metrics(text: str) -> dict[str, tuple[float, float]]:
    """``{desc: (count, seconds)}`` from matrixd's Prometheus text (database transactions)."""
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        m = _TXN_LINE.match(line)
        if m:
            entry = out.setdefault(m.group("desc"), [0.0, 0.0])
            entry[0 if m.group(1) == "count" else 1] = float(m.group("value"))
    return {k: (v[0], v[1]) for k, v in out.items()}


def txn_delta_report(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]],
                     top: int = 12) -> str:
    """The database transactions run between two scrapes, by time spent on the DB thread."""
    rows = []
    for desc, (count, seconds) in after.items():
        c0, s0 = before.get(desc, (0.0, 0.0))
        if count - c0 > 0:
            rows.append((seconds - s0, count - c0, desc))
    rows.sort(reverse=True)
    total_n = sum(r[1] for r in rows)
    total_s = sum(r[0] for r in rows)
    out = [f"  database transactions: {total_n:.0f} in {total_s:.2f}s of DB-thread time"]
    out += [f"    {n:7.0f} x {desc:<40} {s:7.3f}s  ({1000 * s / n:.2f} ms each)" for s, n, desc in rows[:top]]
    return "\n".join(out)
