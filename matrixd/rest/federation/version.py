"""``GET /_matrix/federation/v1/version``: the implementation's name and version (no authentication)."""

from __future__ import annotations

from matrixd.crypto.server_keys import JsonDict
from matrixd.federation.software import SERVER_SOFTWARE, server_version
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, federation_patterns


class FederationVersionServlet(RestServlet):
    PATTERNS = federation_patterns("/version")

    def __init__(self) -> None:
        self._body = {"server": {"name": SERVER_SOFTWARE, "version": server_version()}}

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        return 200, self._body
