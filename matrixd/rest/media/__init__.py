"""Media servlets: which go in the ``media`` resource and which in ``client``.

``/_matrix/media/*`` (uploads, and the deprecated unauthenticated downloads,
thumbnails and config) belongs to the ``media`` resource; the authenticated
``/_matrix/client/v1/media/*`` endpoints to ``client``. URL previews
(``preview_url``) are not served: they need an outbound HTTP client that is
safe against SSRF, which matrixd does not have yet, so those paths answer 404
``M_UNRECOGNIZED`` whatever ``url_preview_enabled`` says.
"""

from __future__ import annotations

import attrs

from matrixd.config.media import MediaConfig
from matrixd.http.auth import Auth
from matrixd.http.server import RestServlet
from matrixd.media.repository import MediaRepository
from matrixd.media.thumbnails import ThumbnailProvider
from matrixd.rest.media.config import LegacyMediaConfigServlet, MediaConfigServlet
from matrixd.rest.media.download import DownloadServlet, LegacyDownloadServlet
from matrixd.rest.media.thumbnail import LegacyThumbnailServlet, ThumbnailServlet
from matrixd.rest.media.upload import AsyncUploadServlet, CreateMediaServlet, UploadServlet


@attrs.frozen
class MediaServlets:
    media: list[RestServlet]
    client: list[RestServlet]


def build_media_servlets(
    auth: Auth, config: MediaConfig, repository: MediaRepository, thumbnails: ThumbnailProvider
) -> MediaServlets:
    return MediaServlets(
        media=[
            UploadServlet(auth, repository),
            CreateMediaServlet(auth, repository),
            AsyncUploadServlet(auth, repository),
            LegacyDownloadServlet(repository),
            LegacyThumbnailServlet(repository, thumbnails),
            LegacyMediaConfigServlet(auth, config),
        ],
        client=[
            DownloadServlet(auth, repository),
            ThumbnailServlet(auth, repository, thumbnails),
            MediaConfigServlet(auth, config),
        ],
    )
