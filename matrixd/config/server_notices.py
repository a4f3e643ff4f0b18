"""The ``server_notices`` section: the system user that sends server notices.

Keys (Synapse's): ``system_mxid_localpart`` (required to enable notices),
``system_mxid_display_name``, ``system_mxid_avatar_url``, ``room_name``.
"""

from __future__ import annotations

from typing import Optional

import attrs

from matrixd.api.errors import ConfigError
from matrixd.config._reader import ConfigReader


@attrs.frozen(slots=True)
class ServerNoticesConfig:
    system_mxid_localpart: Optional[str] = None
    system_mxid_display_name: Optional[str] = None
    system_mxid_avatar_url: Optional[str] = None
    room_name: str = "Server Notices"

    @property
    def enabled(self) -> bool:
        return self.system_mxid_localpart is not None

    @classmethod
    def parse(cls, r: ConfigReader) -> "ServerNoticesConfig":
        s = r.section("server_notices")
        localpart = s.string("system_mxid_localpart")
        if localpart is not None and (not localpart or ":" in localpart or localpart.startswith("@")):
            raise ConfigError(s.key("system_mxid_localpart"), "must be a bare localpart such as 'notices'")
        avatar = s.string("system_mxid_avatar_url")
        if avatar is not None and not avatar.startswith("mxc://"):
            raise ConfigError(s.key("system_mxid_avatar_url"), "must be an mxc:// URI")
        return cls(
            system_mxid_localpart=localpart,
            system_mxid_display_name=s.string("system_mxid_display_name"),
            system_mxid_avatar_url=avatar,
            room_name=s.string("room_name", "Server Notices") or "Server Notices",
        )
