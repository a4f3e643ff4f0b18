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
    i = path.rfind("/matrixd/")
    if i < 0:
        return None
    return path[i + 1:].removesuffix(".py").replace("/", ".")


def summarize(path: str, top: int = 15) -> str:
    """A text summary of one raw py-spy file (recorded with ``--threads``): the
    split between the reactor thread and the database pool threads, the top
    functions by self time, the top matrixd modules by inclusive time, and
    coarse buckets (storage, JSON, signing/hashing, bcrypt, Twisted HTTP,
    auth/state).
    """
    self_time: collections.Counter[str] = collections.Counter()
    inclusive_mod: collections.Counter[str] = collections.Counter()
    buckets: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        return f"(no profile: {e})"
    for line in lines:
        stack, _, count_s = line.rstrip("\n").rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = stack.split(";")
        if frames[0].startswith("thread ("):
            thread = frames[0].partition(": ")[2] or frames[0]
            frames = frames[1:] or frames
        else:
            thread = "?"
        threads["reactor (MainThread)" if thread == "MainThread" else "other threads (DB pool, ...)"] += count
        leaf = frames[-1]
        m = _FRAME.match(leaf)
        label = f"{m.group('func')} ({_short_file(m.group('file'))}:{m.group('line') or '?'})" if m else leaf
        self_time[label] += count
        for mod in {mm for mm in (_module_of(fr) for fr in frames) if mm}:
            inclusive_mod[mod] += count
        joined = ";".join(frames)
        for name, needles in _BUCKETS:
            if any(n in joined for n in needles):
                buckets[name] += count
    if total == 0:
        return "(no samples)"

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    out = [f"{total} samples (all non-idle threads)"]
    out += [f"    {pct(n)}  {name}" for name, n in threads.most_common()]
    out.append("  top self time:")
    out += [f"    {pct(n)}  {label}" for label, n in self_time.most_common(top)]
    out.append("  top matrixd modules (inclusive):")
    out += [f"    {pct(n)}  {mod}" for mod, n in inclusive_mod.most_common(top)]
    out.append("  buckets (inclusive, may overlap):")
    out += [f"    {pct(n)}  {name}" for name, n in buckets.most_common() if n]
    return "\n".join(out)


_BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("matrixd.storage", ("/matrixd/storage/",)),
    ("database driver calls (execute/fetch/commit)", ("execute (", "executemany (", "fetchall (", "fetchone (",
                                                     "commit (")),
    ("JSON encode/decode", ("canonicaljson", "/json/")),
    ("signing/hashing", ("nacl", "signedjson", "hashlib", "/events/hashing", "/events/signing")),
    ("bcrypt", ("bcrypt",)),
    ("twisted.web (HTTP parsing/writing)", ("twisted/web/",)),
    ("matrixd.state (auth rules, state res)", ("/matrixd/state/",)),
    ("matrixd.http (servlet glue)", ("/matrixd/http/",)),
    ("logging", ("/logging/",)),
]
