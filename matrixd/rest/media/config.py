"""``GET /_matrix/client/v1/media/config`` and the deprecated ``/_matrix/media/v3/config``."""

from __future__ import annotations

from matrixd.config.media import MediaConfig
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns, media_patterns
from matrixd.types import JsonDict


class _MediaConfigBase(RestServlet):
    def __init__(self, auth: Auth, config: MediaConfig) -> None:
        self._auth = auth
        self._body: JsonDict = {"m.upload.size": config.max_upload_size}

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.get_user_by_req(request)
        return 200, dict(self._body)


class MediaConfigServlet(_MediaConfigBase):
    PATTERNS = client_patterns("/media/config", releases=(), v1=True)


class LegacyMediaConfigServlet(_MediaConfigBase):
    PATTERNS = media_patterns("/config", versions=("r0", "v1", "v3"))
