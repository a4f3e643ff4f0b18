"""The presence section: whether the server tracks and shares users' presence."""

from __future__ import annotations

import attrs

from matrixd.config._reader import ConfigReader


@attrs.frozen(slots=True)
class PresenceConfig:
    """Keys: ``presence.enabled`` (default true).

    Disabled, the server accepts presence updates but stores nothing, sends
    no presence in ``/sync`` and reports everyone offline.
    """

    enabled: bool = True

    @classmethod
    def parse(cls, r: ConfigReader) -> "PresenceConfig":
        section = r.section("presence")
        return cls(enabled=section.boolean("enabled", True))
