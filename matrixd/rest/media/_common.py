"""Helpers shared by the media servlets: path patterns, query parameters, sending files."""

from __future__ import annotations

from typing import IO, Optional, Pattern

from matrixd.http.request import MatrixRequest
from matrixd.http.server import client_patterns, media_patterns, respond_with_file
from matrixd.http.servlet import parse_boolean, parse_integer
from matrixd.media.headers import media_headers
from matrixd.media.repository import DEFAULT_TIMEOUT_MS

# The unauthenticated download/thumbnail endpoints: v3 is the spec's, r0 and v1
# are what older clients still ask for.
LEGACY_VERSIONS = ("r0", "v1", "v3")

# Legacy responses may sit in shared caches; authenticated ones only in the client's.
PUBLIC_CACHE_CONTROL = "public, max-age=86400, s-maxage=86400"
PRIVATE_CACHE_CONTROL = "private, max-age=86400"

_MEDIA_PATH = "/(?P<server_name>[^/]+)/(?P<media_id>[^/]+)"


def legacy_patterns(action: str, with_file_name: bool = False) -> list[Pattern[str]]:
    """``/_matrix/media/<version>/<action>/{serverName}/{mediaId}[/{fileName}]``."""
    suffix = "(?:/(?P<file_name>[^/]*))?" if with_file_name else ""
    return media_patterns(f"/{action}{_MEDIA_PATH}{suffix}", versions=LEGACY_VERSIONS)


def authed_patterns(action: str, with_file_name: bool = False) -> list[Pattern[str]]:
    """``/_matrix/client/v1/media/<action>/{serverName}/{mediaId}[/{fileName}]``."""
    suffix = "(?:/(?P<file_name>[^/]*))?" if with_file_name else ""
    return client_patterns(f"/media/{action}{_MEDIA_PATH}{suffix}", releases=(), v1=True)


def parse_timeout_ms(request: MatrixRequest) -> int:
    return parse_integer(request, "timeout_ms", DEFAULT_TIMEOUT_MS, min_value=0)


def parse_legacy_flags(request: MatrixRequest) -> bool:
    """``allow_remote`` (returned) and ``allow_redirect`` (validated; we never redirect)."""
    parse_boolean(request, "allow_redirect", False)
    return parse_boolean(request, "allow_remote", True)


async def send_media(
    request: MatrixRequest,
    source: IO[bytes],
    *,
    media_type: str,
    length: Optional[int],
    filename: Optional[str],
    cache_control: str,
    force_inline: bool = False,
) -> None:
    """Stream ``source`` as the response with the media safety headers; closes it."""
    headers = media_headers(media_type, filename, force_inline=force_inline, cache_control=cache_control)
    try:
        await respond_with_file(request, 200, media_type.encode("ascii"), source, length, headers)
    finally:
        source.close()
