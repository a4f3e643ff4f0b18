"""The metrics section."""

from __future__ import annotations

import attrs

from matrixd.config._reader import ConfigReader


@attrs.frozen(slots=True)
class MetricsConfig:
    """Keys: ``enable_metrics`` (serve Prometheus metrics on metrics listeners and
    ``metrics`` resources) and ``report_stats`` (accepted; matrixd never phones home).
    """

    enable_metrics: bool = False
    report_stats: bool = False

    @classmethod
    def parse(cls, r: ConfigReader) -> "MetricsConfig":
        return cls(
            enable_metrics=r.boolean("enable_metrics", False),
            report_stats=r.boolean("report_stats", False),
        )
