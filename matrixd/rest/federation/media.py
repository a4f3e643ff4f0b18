"""The federation content repository (Matrix 1.11): ``GET /_matrix/federation/v1/media/download/{mediaId}``
and ``.../media/thumbnail/{mediaId}``.

X-Matrix authenticated (and under ``rc_federation``). Only this server's own
media is served: a media id names local media, so remote or unknown ids are
404 ``M_NOT_FOUND``, as is quarantined media (the repository's lookup). The
answer is ``multipart/mixed``: an ``application/json`` part holding ``{}``,
then the media with its ``Content-Type`` and ``Content-Disposition``
(``matrixd.media.multipart``). We never answer with a ``Location`` part.
"""

from __future__ import annotations

from typing import IO, Optional, cast

from matrixd.federation.transport.server import BaseFederationServlet, FederationAuthenticator
from matrixd.http.request import MatrixRequest
from matrixd.http.server import federation_patterns, respond_with_file
from matrixd.media.headers import DEFAULT_MEDIA_TYPE, content_disposition, is_inline_safe
from matrixd.media.multipart import MultipartStream, new_boundary
from matrixd.media.repository import MediaRepository
from matrixd.media.thumbnails import ThumbnailProvider
from matrixd.rest.media._common import parse_timeout_ms
from matrixd.rest.media.thumbnail import parse_thumbnail_request
from matrixd.types import JsonDict


async def _send_multipart(request: MatrixRequest, source: IO[bytes], media_type: str, length: Optional[int],
                          disposition: str) -> None:
    boundary = new_boundary()
    stream = MultipartStream(
        boundary, source, length, {"Content-Type": media_type, "Content-Disposition": disposition}
    )
    try:
        await respond_with_file(
            request, 200, f"multipart/mixed; boundary={boundary}".encode("ascii"), cast(IO[bytes], stream),
            stream.length,
        )
    finally:
        stream.close()


class FederationMediaDownloadServlet(BaseFederationServlet):
    PATTERNS = federation_patterns("/media/download/(?P<media_id>[^/]+)")

    def __init__(self, authenticator: FederationAuthenticator, repository: MediaRepository) -> None:
        super().__init__(authenticator)
        self._repository = repository

    async def on_GET(self, origin: str, content: Optional[JsonDict], request: MatrixRequest, media_id: str) -> None:
        media = await self._repository.get_media(
            self._repository.server_name, media_id, timeout_ms=parse_timeout_ms(request), allow_remote=False,
            authenticated=True,
        )
        source = self._repository.open_content(media)
        media_type = media.media_type or DEFAULT_MEDIA_TYPE
        disposition = content_disposition("inline" if is_inline_safe(media_type) else "attachment",
                                          media.upload_name)
        await _send_multipart(request, source, media_type, media.media_length, disposition)


class FederationMediaThumbnailServlet(BaseFederationServlet):
    PATTERNS = federation_patterns("/media/thumbnail/(?P<media_id>[^/]+)")

    def __init__(self, authenticator: FederationAuthenticator, repository: MediaRepository,
                 thumbnails: ThumbnailProvider) -> None:
        super().__init__(authenticator)
        self._repository = repository
        self._thumbnails = thumbnails

    async def on_GET(self, origin: str, content: Optional[JsonDict], request: MatrixRequest, media_id: str) -> None:
        wanted = parse_thumbnail_request(request)
        media = await self._repository.get_media(
            self._repository.server_name, media_id, timeout_ms=parse_timeout_ms(request), allow_remote=False,
            authenticated=True,
        )
        thumb, source = await self._thumbnails.get_thumbnail(media, wanted)
        await _send_multipart(request, source, thumb.media_type, thumb.length,
                              content_disposition("inline", thumb.filename))


def federation_media_servlets(
    authenticator: FederationAuthenticator, repository: MediaRepository, thumbnails: ThumbnailProvider
) -> list[BaseFederationServlet]:
    return [
        FederationMediaDownloadServlet(authenticator, repository),
        FederationMediaThumbnailServlet(authenticator, repository, thumbnails),
    ]
