"""Fetching media from other homeservers: the interface the federation client implements.

The media repository caches what a ``RemoteMediaFetcher`` delivers and serves
it like local media. The master and media workers bind
``matrixd.federation.media_client.FederationMediaFetcher`` (federation media
endpoint, legacy fallback) once federation is built; until then (and in a
repository built without federation) ``UnavailableRemoteMediaFetcher``
answers honestly that this server cannot reach other servers' media (502)
rather than pretending it is missing.
"""

from __future__ import annotations

from typing import Optional, Protocol

import attrs

from matrixd.api.errors import Codes, MatrixError


class MediaSink(Protocol):
    """Where a fetcher writes the bytes it receives."""

    def write(self, data: bytes) -> None: ...


@attrs.frozen(slots=True)
class RemoteMediaMetadata:
    """What the origin server said about the content."""

    media_type: str
    # The ``filename`` of the origin's Content-Disposition, if any.
    upload_name: Optional[str] = None


class RemoteMediaFetcher(Protocol):
    async def fetch_media(
        self, server_name: str, media_id: str, sink: MediaSink, *, max_size: int, timeout_ms: int
    ) -> RemoteMediaMetadata:
        """Download ``mxc://server_name/media_id`` into ``sink``.

        Implementations stop reading once more than ``max_size`` bytes arrived
        (the sink also refuses them), and give up after ``timeout_ms``.

        Raises:
            NotFoundError: the origin says there is no such media (404).
            MatrixError: 502 ``M_TOO_LARGE`` for content over ``max_size``; 504
                ``M_NOT_YET_UPLOADED`` if the origin has not got the content
                yet; 502 for any other failure to fetch.
        """
        ...


class UnavailableRemoteMediaFetcher:
    """The fetcher of a server with no federation client: every fetch fails with 502."""

    async def fetch_media(
        self, server_name: str, media_id: str, sink: MediaSink, *, max_size: int, timeout_ms: int
    ) -> RemoteMediaMetadata:
        raise MatrixError(
            502, f"This server cannot fetch media from other servers ({server_name})", Codes.UNKNOWN
        )
