"""Response headers for serving user-uploaded content safely.

Uploaded bytes are whatever a user sent, labelled with whatever type they
claimed. Browsers must never run them as part of a page on our origin, so
every media response carries a sandboxing CSP and ``nosniff``, and only types
the spec lists as safe are served ``inline``; everything else is an
``attachment`` (still with its own Content-Type: the disposition is what keeps
it from rendering).
"""

from __future__ import annotations

import email.message
import re
import string
import urllib.parse
from typing import Optional

# Content-Security-Policy the spec recommends for the content repository.
CONTENT_SECURITY_POLICY = (
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
    "style-src 'unsafe-inline'; object-src 'self';"
)

# "Serving inline content": types a browser will not run as script.
INLINE_SAFE_TYPES = frozenset({
    "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave", "audio/wav",
    "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})

DEFAULT_MEDIA_TYPE = "application/octet-stream"
MAX_MEDIA_TYPE_LENGTH = 255

# type "/" subtype [ ";" parameters ]; tokens per RFC 9110, parameters any printable ASCII.
_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_MEDIA_TYPE_RE = re.compile(rf"^{_TOKEN}/{_TOKEN}(?:[ \t]*;[\x20-\x7e]*)?$")

# RFC 5987 attr-char: what may appear unescaped in ``filename*=``.
_ATTR_CHARS = string.ascii_letters + string.digits + "!#$&+-.^_`|~"
# Characters a plain quoted ``filename="..."`` carries without surprises: printable
# ASCII minus the quote and backslash (escapes are poorly supported), ``%``
# (some browsers percent-decode) and ``;`` (some parsers split on it).
_PLAIN_FILENAME_RE = re.compile(r'^[\x20-\x7e]*$')
_PLAIN_FILENAME_EXCLUDED = frozenset('"\\%;')


def is_valid_media_type(value: str) -> bool:
    """Whether ``value`` is a syntactically valid Content-Type header value."""
    return len(value) <= MAX_MEDIA_TYPE_LENGTH and bool(_MEDIA_TYPE_RE.match(value))


def base_media_type(media_type: str) -> str:
    """``Image/PNG; x=y`` -> ``image/png``."""
    return media_type.split(";", 1)[0].strip().lower()


def is_inline_safe(media_type: str) -> bool:
    return base_media_type(media_type) in INLINE_SAFE_TYPES


def content_disposition(disposition: str, filename: Optional[str]) -> str:
    """A ``Content-Disposition`` value per RFC 6266.

    Plain ASCII names go in ``filename="..."``; anything else (non-ASCII,
    quotes, backslashes, control characters) in ``filename*=utf-8''...`` with
    RFC 5987 percent-encoding, which every current browser understands.
    """
    if disposition not in ("inline", "attachment"):
        raise ValueError(f"unknown disposition {disposition!r}")
    if not filename:
        return disposition
    if _PLAIN_FILENAME_RE.match(filename) and not _PLAIN_FILENAME_EXCLUDED.intersection(filename):
        return f'{disposition}; filename="{filename}"'
    encoded = urllib.parse.quote(filename.encode("utf-8"), safe=_ATTR_CHARS)
    return f"{disposition}; filename*=utf-8''{encoded}"


def media_headers(media_type: str, filename: Optional[str], *, force_inline: bool = False,
                  cache_control: str) -> dict[str, str]:
    """Every header a media response carries except Content-Type/Length.

    ``force_inline``: thumbnails (always images we made) are ``inline``.
    """
    disposition = "inline" if force_inline or is_inline_safe(media_type) else "attachment"
    return {
        "Content-Disposition": content_disposition(disposition, filename),
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "Cache-Control": cache_control,
    }


def filename_from_disposition(value: Optional[str]) -> Optional[str]:
    """The file name a ``Content-Disposition`` value gives (``filename*`` per RFC 5987 first), if any."""
    if not value:
        return None
    message = email.message.Message()
    message["Content-Disposition"] = value
    try:
        name = message.get_filename()
    except (LookupError, ValueError):  # an unknown charset in filename*
        return None
    return name or None
