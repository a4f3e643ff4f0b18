"""``GET /_matrix/client/v3/capabilities``: what this server lets the user do."""

from __future__ import annotations

from matrixd.config.registration import RegistrationConfig
from matrixd.config.server import ServerConfig
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.types import JsonDict


class CapabilitiesServlet(RestServlet):
    """Answers from config; requires an access token (guests included)."""

    PATTERNS = client_patterns("/capabilities")

    def __init__(self, server_config: ServerConfig, registration_config: RegistrationConfig, auth: Auth) -> None:
        self._auth = auth
        reg = registration_config
        disallowed_profile_fields = [
            name
            for name, allowed in (
                ("displayname", reg.enable_set_displayname),
                ("avatar_url", reg.enable_set_avatar_url),
            )
            if not allowed
        ]
        profile_fields: JsonDict = {"enabled": True}
        if disallowed_profile_fields:
            profile_fields["disallowed"] = disallowed_profile_fields
        self._capabilities: JsonDict = {
            "m.room_versions": {
                "default": server_config.default_room_version,
                "available": {
                    rv.identifier: "stable" if rv.stable else "unstable"
                    for rv in KNOWN_ROOM_VERSIONS.values()
                },
            },
            "m.change_password": {"enabled": reg.password.enabled},
            "m.set_displayname": {"enabled": reg.enable_set_displayname},
            "m.set_avatar_url": {"enabled": reg.enable_set_avatar_url},
            "m.profile_fields": profile_fields,
            "m.3pid_changes": {"enabled": reg.enable_3pid_changes},
            "m.get_login_token": {"enabled": False},
            "m.forget_forced_upon_leave": {"enabled": False},
        }

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.get_user_by_req(request, allow_guest=True)
        return 200, {"capabilities": self._capabilities}
