"""Media ids and ``mxc://`` URIs.

The spec makes servers sanitise both halves of an ``mxc://`` URI before they
touch storage: server names must be valid server names and media ids may only
use ``A-Za-z0-9_-``. Everything that builds a storage path goes through these
checks, so no request can name a file outside the media store.
"""

from __future__ import annotations

import re
import secrets
import string

from matrixd.types import is_valid_server_name

MEDIA_ID_LENGTH = 24
MAX_MEDIA_ID_LENGTH = 255
_MEDIA_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,%d}$" % MAX_MEDIA_ID_LENGTH)
_MEDIA_ID_ALPHABET = string.ascii_letters + string.digits


def generate_media_id() -> str:
    """A new random media id (about 143 bits of entropy: unguessable)."""
    return "".join(secrets.choice(_MEDIA_ID_ALPHABET) for _ in range(MEDIA_ID_LENGTH))


def is_valid_media_id(media_id: str) -> bool:
    """Only the characters the spec allows, and a sane length."""
    return bool(_MEDIA_ID_RE.match(media_id))


def is_valid_media_origin(server_name: str) -> bool:
    """A server name that is also safe as a directory name.

    ``is_valid_server_name`` accepts strings like ``..`` (dots are legal in a
    hostname pattern); no real host has an empty label, so those are refused.
    """
    return (
        is_valid_server_name(server_name)
        and not server_name.startswith(".")
        and ".." not in server_name
    )


def mxc_uri(server_name: str, media_id: str) -> str:
    return f"mxc://{server_name}/{media_id}"
