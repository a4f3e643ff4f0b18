"""Uploading media: ``POST /upload``, ``POST /create`` and ``PUT /upload/{serverName}/{mediaId}``.

These stay under ``/_matrix/media`` (the spec has not moved them to the client
API), so they are served by listeners with the ``media`` resource, whose body
size limit is raised to ``max_upload_size``.
"""

from __future__ import annotations

from typing import Optional

from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, media_patterns
from matrixd.http.servlet import parse_string
from matrixd.media.repository import MediaRepository
from matrixd.types import JsonDict

UPLOAD_VERSIONS = ("r0", "v1", "v3")


def _content_type(request: MatrixRequest) -> Optional[str]:
    values = request.requestHeaders.getRawHeaders(b"Content-Type")
    if not values:
        return None
    return values[-1].decode("latin-1").strip()


class UploadServlet(RestServlet):
    """``POST /_matrix/media/v3/upload?filename=``: store the body, answer its ``mxc://`` URI."""

    PATTERNS = media_patterns("/upload", versions=UPLOAD_VERSIONS)

    def __init__(self, auth: Auth, repository: MediaRepository) -> None:
        self._auth = auth
        self._repository = repository

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        upload_name = parse_string(request, "filename")
        assert request.content is not None
        content_uri = await self._repository.upload(requester, request.content, _content_type(request), upload_name)
        return 200, {"content_uri": content_uri}


class CreateMediaServlet(RestServlet):
    """``POST /_matrix/media/v1/create``: reserve an ``mxc://`` URI for a later upload."""

    PATTERNS = media_patterns("/create", versions=("v1",))

    def __init__(self, auth: Auth, repository: MediaRepository) -> None:
        self._auth = auth
        self._repository = repository

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        # The spec defines no request body; whatever was sent is ignored.
        content_uri, expires_at = await self._repository.create_pending(requester)
        return 200, {"content_uri": content_uri, "unused_expires_at": expires_at}


class AsyncUploadServlet(RestServlet):
    """``PUT /_matrix/media/v3/upload/{serverName}/{mediaId}``: content for a reserved URI."""

    PATTERNS = media_patterns("/upload/(?P<server_name>[^/]+)/(?P<media_id>[^/]+)", versions=UPLOAD_VERSIONS)

    def __init__(self, auth: Auth, repository: MediaRepository) -> None:
        self._auth = auth
        self._repository = repository

    async def on_PUT(self, request: MatrixRequest, server_name: str, media_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        upload_name = parse_string(request, "filename")
        assert request.content is not None
        await self._repository.upload_pending(
            requester, server_name, media_id, request.content, _content_type(request), upload_name
        )
        return 200, {}
