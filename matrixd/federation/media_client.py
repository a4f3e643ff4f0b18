"""Other servers' media, fetched over federation (implements ``matrixd.media.remote.RemoteMediaFetcher``).

``FederationMediaFetcher.fetch_media`` first asks the origin's authenticated
federation endpoint, ``GET /_matrix/federation/v1/media/download/{mediaId}``
(Matrix 1.11, X-Matrix signed). Its ``multipart/mixed`` answer
(``matrixd.media.multipart``) carries the media in its second part, or a
``Location`` to fetch it from (HTTPS only, through ``redirect_agent``: the
federation connector, so the IP range blacklist applies; not followed further).

Only when the origin does not know that endpoint (404/400 ``M_UNRECOGNIZED``,
405, or a 404/400 without a Matrix error body) does it fall back to the
deprecated ``GET /_matrix/media/v3/download/{serverName}/{mediaId}?allow_remote=false``,
as the server-server spec requires.

Errors follow the ``RemoteMediaFetcher`` contract: 404 ``M_NOT_FOUND`` when
the origin says so, 504 ``M_NOT_YET_UPLOADED``, 502 ``M_TOO_LARGE`` past
``max_size``, 502 for anything else.
"""

from __future__ import annotations

import logging
from typing import Any, Optional
from urllib.parse import quote, urlsplit

from twisted.internet import defer
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent

from matrixd.api.errors import Codes, MatrixError, NotFoundError
from matrixd.federation.transport.body import BodyTooLargeError, read_body_limited
from matrixd.federation.transport.client import (
    HttpResponseException,
    MatrixFederationClient,
    RequestSendFailed,
    ResponseTooLargeError,
)
from matrixd.media.headers import DEFAULT_MEDIA_TYPE, filename_from_disposition
from matrixd.media.multipart import MultipartError, parse_media_multipart
from matrixd.media.remote import MediaSink, RemoteMediaMetadata

logger = logging.getLogger(__name__)

# Room for the multipart framing and the metadata part around the media itself.
MULTIPART_OVERHEAD = 64 * 1024
MIN_TIMEOUT_S = 5.0
WRITE_CHUNK = 64 * 1024


def _header(headers: Headers, name: bytes) -> Optional[str]:
    values = headers.getRawHeaders(name)
    if not values:
        return None
    return values[0].decode("latin-1").strip()


def _is_unknown_endpoint(e: HttpResponseException) -> bool:
    """The origin does not implement the federation media endpoint (so try the legacy one)."""
    if e.code == 405:
        return True
    if e.code in (400, 404):
        return e.errcode in (Codes.UNRECOGNIZED, None)
    return False


def _remote_error(server_name: str, e: HttpResponseException) -> MatrixError:
    if e.code == 404:
        return NotFoundError(f"{server_name} has no such media")
    if e.code == 504 and e.errcode == Codes.NOT_YET_UPLOADED:
        return MatrixError(504, "The content has not yet been uploaded to its origin", Codes.NOT_YET_UPLOADED)
    if e.errcode == Codes.TOO_LARGE:
        return MatrixError(502, "Remote content is too large to serve", Codes.TOO_LARGE)
    return MatrixError(502, f"{server_name} answered {e.code} for the media", Codes.UNKNOWN)


def _too_large() -> MatrixError:
    return MatrixError(502, "Remote content is too large to serve", Codes.TOO_LARGE)


def _write(sink: MediaSink, data: bytes) -> None:
    for i in range(0, len(data), WRITE_CHUNK):
        sink.write(data[i:i + WRITE_CHUNK])


class FederationMediaFetcher:
    def __init__(self, client: MatrixFederationClient, reactor: Any, redirect_agent: Optional[IAgent] = None) -> None:
        self._client = client
        self._reactor = reactor
        self.redirect_agent = redirect_agent

    async def fetch_media(
        self, server_name: str, media_id: str, sink: MediaSink, *, max_size: int, timeout_ms: int
    ) -> RemoteMediaMetadata:
        timeout = max(MIN_TIMEOUT_S, timeout_ms / 1000)
        path = f"/_matrix/federation/v1/media/download/{quote(media_id, safe='')}"
        try:
            headers, body = await self._client.get_raw(
                server_name, path, {"timeout_ms": str(timeout_ms)}, timeout=timeout,
                max_response_size=max_size + MULTIPART_OVERHEAD,
            )
        except HttpResponseException as e:
            if not _is_unknown_endpoint(e):
                raise _remote_error(server_name, e) from None
            logger.info("%s does not serve federation media (%d %s); using the legacy endpoint",
                        server_name, e.code, e.errcode)
            return await self._fetch_legacy(server_name, media_id, sink, max_size, timeout)
        except RequestSendFailed as e:
            raise self._send_failed(server_name, e) from None

        try:
            _metadata, part = parse_media_multipart(_header(headers, b"Content-Type") or "", body)
        except MultipartError as e:
            logger.info("%s sent an unusable federation media answer for %s: %s", server_name, media_id, e)
            raise MatrixError(502, f"{server_name} sent an invalid media response", Codes.UNKNOWN) from None
        if part.location is not None:
            return await self._fetch_location(server_name, part.location, sink, max_size, timeout)
        if len(part.body) > max_size:
            raise _too_large()
        _write(sink, part.body)
        return RemoteMediaMetadata(part.content_type or DEFAULT_MEDIA_TYPE,
                                   filename_from_disposition(part.content_disposition))

    async def _fetch_legacy(
        self, server_name: str, media_id: str, sink: MediaSink, max_size: int, timeout: float
    ) -> RemoteMediaMetadata:
        path = f"/_matrix/media/v3/download/{quote(server_name, safe='')}/{quote(media_id, safe='')}"
        try:
            headers, body = await self._client.get_raw(
                server_name, path, {"allow_remote": "false", "timeout_ms": str(int(timeout * 1000))},
                timeout=timeout, max_response_size=max_size,
            )
        except HttpResponseException as e:
            raise _remote_error(server_name, e) from None
        except RequestSendFailed as e:
            raise self._send_failed(server_name, e) from None
        _write(sink, body)
        return RemoteMediaMetadata(_header(headers, b"Content-Type") or DEFAULT_MEDIA_TYPE,
                                   filename_from_disposition(_header(headers, b"Content-Disposition")))

    async def _fetch_location(
        self, server_name: str, location: str, sink: MediaSink, max_size: int, timeout: float
    ) -> RemoteMediaMetadata:
        if self.redirect_agent is None or urlsplit(location).scheme.lower() != "https":
            raise MatrixError(502, f"{server_name} redirected the media to a location we do not follow",
                              Codes.UNKNOWN)
        try:
            d = self.redirect_agent.request(b"GET", location.encode("ascii"), Headers({b"User-Agent": [b"matrixd"]}))
            d.addTimeout(timeout, self._reactor)
            response = await d
            body_d = read_body_limited(response, max_size)
            body_d.addTimeout(timeout, self._reactor)
            body = await body_d
        except BodyTooLargeError:
            raise _too_large() from None
        except defer.CancelledError:
            raise  # our caller gave up (a timeout arrives as defer.TimeoutError)
        except Exception as e:  # connection refused, IP range blacklisted, timed out, bad URL...
            logger.info("fetching media of %s from its Location failed: %s", server_name, e)
            raise MatrixError(502, f"Could not fetch the media {server_name} redirected to", Codes.UNKNOWN) from None
        if response.code == 404:
            raise NotFoundError(f"{server_name}'s media location has no such media")
        if not 200 <= response.code < 300:
            raise MatrixError(502, f"{server_name}'s media location answered {response.code}", Codes.UNKNOWN)
        _write(sink, body)
        return RemoteMediaMetadata(_header(response.headers, b"Content-Type") or DEFAULT_MEDIA_TYPE,
                                   filename_from_disposition(_header(response.headers, b"Content-Disposition")))

    @staticmethod
    def _send_failed(server_name: str, e: RequestSendFailed) -> MatrixError:
        if isinstance(e, ResponseTooLargeError):
            return _too_large()
        logger.info("fetching media from %s failed: %s", server_name, e.reason)
        return MatrixError(502, f"Could not fetch the media from {server_name}: {e.reason}", Codes.UNKNOWN)
