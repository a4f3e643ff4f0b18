"""Downloading media: the authenticated ``/_matrix/client/v1/media/download`` and the
deprecated unauthenticated ``/_matrix/media/v3/download``.

Media stored while ``enable_authenticated_media`` is on is 404 on the old
endpoints (the spec's freeze). We never redirect, so ``allow_redirect`` is
accepted and ignored, which the spec allows.
"""

from __future__ import annotations

from typing import Optional

from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet
from matrixd.media.headers import DEFAULT_MEDIA_TYPE
from matrixd.media.repository import MediaRepository
from matrixd.rest.media._common import (
    PRIVATE_CACHE_CONTROL,
    PUBLIC_CACHE_CONTROL,
    authed_patterns,
    legacy_patterns,
    parse_legacy_flags,
    parse_timeout_ms,
    send_media,
)


async def _download(
    request: MatrixRequest, repository: MediaRepository, server_name: str, media_id: str,
    file_name: Optional[str], *, timeout_ms: int, allow_remote: bool, authenticated: bool,
) -> None:
    media = await repository.get_media(
        server_name, media_id, timeout_ms=timeout_ms, allow_remote=allow_remote, authenticated=authenticated
    )
    source = repository.open_content(media)
    await send_media(
        request, source,
        media_type=media.media_type or DEFAULT_MEDIA_TYPE,
        length=media.media_length,
        filename=file_name or media.upload_name,
        cache_control=PRIVATE_CACHE_CONTROL if authenticated else PUBLIC_CACHE_CONTROL,
    )


class DownloadServlet(RestServlet):
    """``GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`` (guests too)."""

    PATTERNS = authed_patterns("download", with_file_name=True)

    def __init__(self, auth: Auth, repository: MediaRepository) -> None:
        self._auth = auth
        self._repository = repository

    async def on_GET(self, request: MatrixRequest, server_name: str, media_id: str,
                     file_name: Optional[str] = None) -> None:
        await self._auth.get_user_by_req(request, allow_guest=True)
        await _download(request, self._repository, server_name, media_id, file_name,
                        timeout_ms=parse_timeout_ms(request), allow_remote=True, authenticated=True)


class LegacyDownloadServlet(RestServlet):
    """``GET /_matrix/media/v3/download/{serverName}/{mediaId}[/{fileName}]`` (deprecated, no auth)."""

    PATTERNS = legacy_patterns("download", with_file_name=True)

    def __init__(self, repository: MediaRepository) -> None:
        self._repository = repository

    async def on_GET(self, request: MatrixRequest, server_name: str, media_id: str,
                     file_name: Optional[str] = None) -> None:
        allow_remote = parse_legacy_flags(request)
        await _download(request, self._repository, server_name, media_id, file_name,
                        timeout_ms=parse_timeout_ms(request), allow_remote=allow_remote, authenticated=False)
