"""Thumbnails: ``/_matrix/client/v1/media/thumbnail`` and the deprecated
``/_matrix/media/v3/thumbnail``. Always ``inline`` (they are images we made, or
originals of an image type the spec lists for thumbnails)."""

from __future__ import annotations

from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet
from matrixd.http.servlet import parse_boolean, parse_integer, parse_string
from matrixd.media.repository import MediaRepository
from matrixd.media.sizing import ThumbnailRequest
from matrixd.media.thumbnails import ThumbnailProvider
from matrixd.rest.media._common import (
    PRIVATE_CACHE_CONTROL,
    PUBLIC_CACHE_CONTROL,
    authed_patterns,
    legacy_patterns,
    parse_legacy_flags,
    parse_timeout_ms,
    send_media,
)

# Far beyond any screen; a bound so the numbers stay sane in logs and caches.
MAX_THUMBNAIL_DIMENSION = 16384


def parse_thumbnail_request(request: MatrixRequest) -> ThumbnailRequest:
    return ThumbnailRequest(
        width=parse_integer(request, "width", required=True, min_value=1, max_value=MAX_THUMBNAIL_DIMENSION),
        height=parse_integer(request, "height", required=True, min_value=1, max_value=MAX_THUMBNAIL_DIMENSION),
        method=parse_string(request, "method", "scale", allowed_values=("crop", "scale")),
        animated=parse_boolean(request, "animated"),
    )


async def _thumbnail(
    request: MatrixRequest, repository: MediaRepository, thumbnails: ThumbnailProvider, server_name: str,
    media_id: str, *, allow_remote: bool, authenticated: bool,
) -> None:
    wanted = parse_thumbnail_request(request)
    timeout_ms = parse_timeout_ms(request)
    media = await repository.get_media(
        server_name, media_id, timeout_ms=timeout_ms, allow_remote=allow_remote, authenticated=authenticated
    )
    thumb, source = await thumbnails.get_thumbnail(media, wanted)
    await send_media(
        request, source,
        media_type=thumb.media_type,
        length=thumb.length,
        filename=thumb.filename,
        cache_control=PRIVATE_CACHE_CONTROL if authenticated else PUBLIC_CACHE_CONTROL,
        force_inline=True,
    )


class ThumbnailServlet(RestServlet):
    """``GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`` (guests too)."""

    PATTERNS = authed_patterns("thumbnail")

    def __init__(self, auth: Auth, repository: MediaRepository, thumbnails: ThumbnailProvider) -> None:
        self._auth = auth
        self._repository = repository
        self._thumbnails = thumbnails

    async def on_GET(self, request: MatrixRequest, server_name: str, media_id: str) -> None:
        await self._auth.get_user_by_req(request, allow_guest=True)
        await _thumbnail(request, self._repository, self._thumbnails, server_name, media_id,
                         allow_remote=True, authenticated=True)


class LegacyThumbnailServlet(RestServlet):
    """``GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}`` (deprecated, no auth)."""

    PATTERNS = legacy_patterns("thumbnail")

    def __init__(self, repository: MediaRepository, thumbnails: ThumbnailProvider) -> None:
        self._repository = repository
        self._thumbnails = thumbnails

    async def on_GET(self, request: MatrixRequest, server_name: str, media_id: str) -> None:
        allow_remote = parse_legacy_flags(request)
        await _thumbnail(request, self._repository, self._thumbnails, server_name, media_id,
                         allow_remote=allow_remote, authenticated=False)
