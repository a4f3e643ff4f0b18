"""The comparison table: one row per metric, one column per server, the ratio
of the first server to the reference, and the target where one is set."""

from __future__ import annotations

import math
import statistics
from typing import Optional

from bench.scenarios import Metric

# (scenario, metric-name prefix) -> (comparison, ratio) for the first server
# against the reference: ">=" for higher-is-better figures, "<=" for lower.
TARGETS: list[tuple[str, str, str, float]] = [
    ("send", "msgs/s", ">=", 2.0),
    ("fanout", "p99", "<=", 0.5),
    ("initial_sync", "first", "<=", 1 / 3),
    ("initial_sync", "repeat", "<=", 1 / 3),
    ("memory", "peak RSS", "<=", 0.5),
]


def target_for(metric: Metric) -> Optional[tuple[str, float]]:
    for scenario, prefix, op, ratio in TARGETS:
        if metric.scenario == scenario and metric.name.startswith(prefix):
            return op, ratio
    return None


def _fmt(value: Optional[float]) -> str:
    if value is None or math.isnan(value):
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(title: str, servers: list[str], results: dict[str, list[Metric]]) -> str:
    """A Markdown table. ``results[server]`` lists that server's metrics in run order
    (a metric repeated over rounds shows its median); the ratio column is
    ``servers[0] / servers[-1]``.
    """
    first, reference = servers[0], servers[-1]
    keys: list[tuple[str, str, str]] = []
    samples: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for server in servers:
        for m in results.get(server, []):
            key = (m.scenario, m.name, m.unit)
            if key not in samples:
                keys.append(key)
                samples[key] = {}
            samples[key].setdefault(server, []).append(m.value)
    # Repeated rounds: the median per server.
    values = {key: {server: statistics.median(v) for server, v in per.items()} for key, per in samples.items()}
    by_key = {(m.scenario, m.name, m.unit): m for ms in results.values() for m in ms}

    header = ["scenario", "metric", "unit", *servers]
    if len(servers) > 1:
        header += [f"{first}/{reference}", "target", "met"]
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in keys:
        row = [key[0], key[1], key[2], *(_fmt(values[key].get(s)) for s in servers)]
        if len(servers) > 1:
            a, b = values[key].get(first), values[key].get(reference)
            ratio = a / b if a is not None and b else None
            target = target_for(by_key[key])
            met = ""
            target_s = ""
            if target is not None:
                op, want = target
                target_s = f"{op} {want:.2f}"
                if ratio is not None:
                    met = "yes" if (ratio >= want if op == ">=" else ratio <= want) else "NO"
            row += [f"{ratio:.2f}" if ratio is not None else "-", target_s, met]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
