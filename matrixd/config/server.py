"""The ``server`` section: identity, URLs and server-wide feature switches."""

from __future__ import annotations

import urllib.parse
from typing import Optional

import attrs

from matrixd.api.errors import ConfigError
from matrixd.config._reader import ConfigReader
from matrixd.events.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS
from matrixd.types import is_valid_server_name


@attrs.frozen(slots=True)
class UserDirectoryConfig:
    enabled: bool = True
    # Search every local user, not only those sharing a room with the searcher
    # or in public rooms.
    search_all_users: bool = False


@attrs.frozen(slots=True)
class ServerConfig:
    """Keys: ``server_name``, ``public_baseurl``, ``serve_server_wellknown``,
    ``default_room_version``, ``signing_key_path``, ``macaroon_secret_key``,
    ``form_secret``, ``max_request_body_size``, ``pid_file``, ``presence.enabled``,
    ``user_directory.{enabled,search_all_users}``.
    """

    server_name: str
    # Always ends with "/".
    public_baseurl: str
    serve_server_wellknown: bool = False
    default_room_version: str = DEFAULT_ROOM_VERSION.identifier
    signing_key_path: Optional[str] = None
    macaroon_secret_key: Optional[str] = None
    form_secret: Optional[str] = None
    # The largest non-media request body accepted (media uploads use max_upload_size).
    max_request_body_size: int = 10 * 1024 * 1024
    pid_file: Optional[str] = None
    presence_enabled: bool = True
    user_directory: UserDirectoryConfig = UserDirectoryConfig()

    @classmethod
    def parse(cls, r: ConfigReader) -> "ServerConfig":
        server_name = r.required_string("server_name")
        if not is_valid_server_name(server_name):
            raise ConfigError(
                "server_name", f"{server_name!r} is not a valid server name (hostname, IP literal, optional :port)"
            )
        public_baseurl = _parse_baseurl(r.string("public_baseurl"), server_name)

        default_room_version = r.raw("default_room_version", DEFAULT_ROOM_VERSION.identifier)
        if isinstance(default_room_version, int) and not isinstance(default_room_version, bool):
            default_room_version = str(default_room_version)  # YAML reads `10` as a number
        if default_room_version not in KNOWN_ROOM_VERSIONS:
            raise ConfigError(
                "default_room_version",
                f"unknown room version {default_room_version!r}; known: {', '.join(KNOWN_ROOM_VERSIONS)}",
            )

        presence = r.section("presence")
        user_dir = r.section("user_directory")
        return cls(
            server_name=server_name,
            public_baseurl=public_baseurl,
            serve_server_wellknown=r.boolean("serve_server_wellknown", False),
            default_room_version=default_room_version,
            signing_key_path=r.string("signing_key_path"),
            macaroon_secret_key=r.string("macaroon_secret_key"),
            form_secret=r.string("form_secret"),
            max_request_body_size=r.size("max_request_body_size", "10M"),
            pid_file=r.string("pid_file"),
            presence_enabled=presence.boolean("enabled", True),
            user_directory=UserDirectoryConfig(
                enabled=user_dir.boolean("enabled", True),
                search_all_users=user_dir.boolean("search_all_users", False),
            ),
        )


def _parse_baseurl(value: Optional[str], server_name: str) -> str:
    if value is None:
        return f"https://{server_name}/"
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError("public_baseurl", f"must be an http(s) URL such as https://matrix.example.com/, not {value!r}")
    if parsed.query or parsed.fragment:
        raise ConfigError("public_baseurl", "must not have a query string or fragment")
    return value if value.endswith("/") else value + "/"
