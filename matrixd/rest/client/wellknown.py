"""``/.well-known/matrix/client`` and ``/.well-known/matrix/server`` discovery documents."""

from __future__ import annotations

import urllib.parse

from matrixd.config.server import ServerConfig
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, prefixed_patterns
from matrixd.types import JsonDict


class ClientWellKnownServlet(RestServlet):
    """Points clients at ``public_baseurl`` (client-server API, server discovery)."""

    PATTERNS = prefixed_patterns("", "/\\.well-known/matrix/client")

    def __init__(self, server_config: ServerConfig) -> None:
        self._body: JsonDict = {"m.homeserver": {"base_url": server_config.public_baseurl}}

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        return 200, self._body


def server_wellknown_target(server_config: ServerConfig) -> str:
    """``host:port`` other servers should use: public_baseurl's host, port 443 by default."""
    parsed = urllib.parse.urlsplit(server_config.public_baseurl)
    host = parsed.hostname or server_config.server_name
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    port = parsed.port or 443
    return f"{host}:{port}"


class ServerWellKnownServlet(RestServlet):
    """Delegates federation to public_baseurl's host (registered only with
    ``serve_server_wellknown: true``; otherwise the path is a 404).
    """

    PATTERNS = prefixed_patterns("", "/\\.well-known/matrix/server")

    def __init__(self, server_config: ServerConfig) -> None:
        self._body: JsonDict = {"m.server": server_wellknown_target(server_config)}

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        return 200, self._body
