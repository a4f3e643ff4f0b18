"""The TURN section: what ``/voip/turnServer`` hands to clients."""

from __future__ import annotations

from typing import Optional

import attrs

from matrixd.api.errors import ConfigError
from matrixd.config._reader import ConfigReader


@attrs.frozen(slots=True)
class VoipConfig:
    """Keys: ``turn_uris``, ``turn_shared_secret`` (time-limited credentials, the
    TURN REST API scheme) or ``turn_username`` + ``turn_password`` (static),
    ``turn_user_lifetime``, ``turn_allow_guests``.
    """

    turn_uris: tuple[str, ...] = ()
    turn_shared_secret: Optional[str] = None
    turn_username: Optional[str] = None
    turn_password: Optional[str] = None
    turn_user_lifetime_ms: int = 3_600_000
    turn_allow_guests: bool = True

    @classmethod
    def parse(cls, r: ConfigReader) -> "VoipConfig":
        uris = r.string_list("turn_uris")
        for i, uri in enumerate(uris):
            if not uri.startswith(("turn:", "turns:", "stun:", "stuns:")):
                raise ConfigError(f"turn_uris[{i}]", f"{uri!r} is not a turn:, turns:, stun: or stuns: URI")
        username = r.string("turn_username")
        password = r.string("turn_password")
        if (username is None) != (password is None):
            raise ConfigError(
                "turn_password" if password is None else "turn_username",
                "turn_username and turn_password must be set together",
            )
        lifetime = r.duration_ms("turn_user_lifetime", "1h")
        assert lifetime is not None
        return cls(
            turn_uris=uris,
            turn_shared_secret=r.string("turn_shared_secret"),
            turn_username=username,
            turn_password=password,
            turn_user_lifetime_ms=lifetime,
            turn_allow_guests=r.boolean("turn_allow_guests", True),
        )
