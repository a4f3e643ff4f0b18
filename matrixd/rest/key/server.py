"""``GET /_matrix/key/v2/server``: this server's keys, signed, for anyone (no authentication)."""

from __future__ import annotations

from matrixd.crypto.server_keys import JsonDict, LocalServerKeys
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, prefixed_patterns


class LocalKeyServlet(RestServlet):
    """Also answers the deprecated ``/server/{keyId}`` form with the same full response."""

    PATTERNS = prefixed_patterns("/_matrix/key/v2", "/server(?:/(?P<key_id>[^/]*))?")

    def __init__(self, local_keys: LocalServerKeys) -> None:
        self._local_keys = local_keys

    async def on_GET(self, request: MatrixRequest, key_id: str = "") -> tuple[int, JsonDict]:
        return 200, self._local_keys.key_response()
