"""Process-level metrics under Synapse's names: reactor tick time and Python GC pauses.

prometheus_client's default collectors already report process CPU, RSS, open
file descriptors and GC collection counts.  What they lack and Synapse's
dashboards chart is:

* ``python_twisted_reactor_tick_time``: seconds each reactor iteration spent
  running due timed calls (``runUntilCurrent``), and
  ``python_twisted_reactor_pending_calls``: timed calls waiting;
* ``python_gc_time``: seconds each garbage collection took, by generation.

``install_process_metrics(reactor)`` is called once by a real process
(``matrixd.app``); tests with fake reactors never call it.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable

from prometheus_client import Gauge, Histogram

_installed = False


def install_process_metrics(reactor: Any) -> None:
    """Time the reactor's iterations and the GC's collections (idempotent).

    The metrics are registered here, not at import, so that importing matrixd
    (tests do, next to Synapse's own modules in the differential tests)
    registers no process-wide names.
    """
    global _installed
    if _installed:
        return
    _installed = True
    tick_time = Histogram(
        "python_twisted_reactor_tick_time", "Seconds spent running due calls in one reactor iteration",
        buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
    )
    pending_calls = Gauge("python_twisted_reactor_pending_calls", "Timed calls waiting in the reactor")
    gc_time = Histogram(
        "python_gc_time", "Seconds one garbage collection took, by generation", ["gen"],
        buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    )
    run_until_current: Callable[[], None] = reactor.runUntilCurrent

    def timed_run_until_current() -> None:
        start = time.perf_counter()
        try:
            run_until_current()
        finally:
            tick_time.observe(time.perf_counter() - start)

    reactor.runUntilCurrent = timed_run_until_current
    pending_calls.set_function(lambda: len(reactor.getDelayedCalls()))

    started: dict[int, float] = {}

    def on_gc(phase: str, info: dict[str, int]) -> None:
        generation = info.get("generation", 0)
        if phase == "start":
            started[generation] = time.perf_counter()
        elif generation in started:
            gc_time.labels(str(generation)).observe(time.perf_counter() - started.pop(generation))

    gc.callbacks.append(on_gc)
