"""The ``multipart/mixed`` bodies of the federation media endpoints (RFC 2046 section 5.1).

A federation ``/media/download`` or ``/media/thumbnail`` answer has exactly two
parts: an ``application/json`` metadata object (currently always ``{}``), then
either the media (its own ``Content-Type`` and ``Content-Disposition``) or a
part whose ``Location`` header says where to fetch it.

* ``MultipartStream``: the body we send, read like a file, so the media is
  streamed from disk between a small head and tail.
* ``parse_media_multipart``: a strict parser for the body we receive.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import IO, Mapping, Optional

import attrs

CRLF = b"\r\n"
# RFC 2046 bcharsnospace plus space (not last); we only need to accept what peers send.
_BOUNDARY_RE = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")


class MultipartError(ValueError):
    """The body is not the two-part ``multipart/mixed`` answer the spec describes."""


def new_boundary() -> str:
    return secrets.token_hex(16)


def _part_head(headers: Mapping[str, str]) -> bytes:
    return b"".join(f"{name}: {value}".encode("utf-8") + CRLF for name, value in headers.items()) + CRLF


class MultipartStream:
    """``metadata part + media part`` as a readable stream: head bytes, then ``media``, then the tail.

    ``media`` is closed with the stream.
    """

    def __init__(self, boundary: str, media: IO[bytes], media_length: Optional[int],
                 media_headers: Mapping[str, str], metadata: Optional[Mapping[str, object]] = None) -> None:
        dash = b"--" + boundary.encode("ascii")
        self._head = (
            dash + CRLF + _part_head({"Content-Type": "application/json"})
            + json.dumps(dict(metadata or {})).encode("utf-8") + CRLF
            + dash + CRLF + _part_head(media_headers)
        )
        self._tail = CRLF + dash + b"--" + CRLF
        self._media = media
        self._length = None if media_length is None else len(self._head) + media_length + len(self._tail)
        self._stage = 0  # 0: head, 1: media, 2: tail, 3: done

    @property
    def length(self) -> Optional[int]:
        """The whole body's length, if the media's is known."""
        return self._length

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 62
        while self._stage < 3:
            if self._stage == 0:
                chunk, self._head = self._head[:size], self._head[size:]
            elif self._stage == 1:
                chunk = self._media.read(size)
            else:
                chunk, self._tail = self._tail[:size], self._tail[size:]
            if chunk:
                return chunk
            self._stage += 1
        return b""

    def close(self) -> None:
        self._media.close()


@attrs.frozen(slots=True)
class MediaPart:
    """What the second part of a federation media answer holds."""

    headers: Mapping[str, str]  # lower-cased names
    body: bytes
    location: Optional[str]

    @property
    def content_type(self) -> Optional[str]:
        return self.headers.get("content-type")

    @property
    def content_disposition(self) -> Optional[str]:
        return self.headers.get("content-disposition")


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a ``multipart/mixed`` Content-Type (MultipartError otherwise)."""
    media_type, _, params = content_type.partition(";")
    if media_type.strip().lower() != "multipart/mixed":
        raise MultipartError(f"the response is {media_type.strip()[:100]!r}, not multipart/mixed")
    for param in params.split(";"):
        name, eq, value = param.strip().partition("=")
        if eq and name.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if not _BOUNDARY_RE.match(value):
                raise MultipartError("the multipart boundary is not valid")
            return value
    raise MultipartError("the multipart/mixed Content-Type has no boundary")


def _parse_part(raw: bytes) -> tuple[dict[str, str], bytes]:
    head, sep, body = raw.partition(CRLF + CRLF)
    if not sep:
        if raw.startswith(CRLF):  # a part without headers
            return {}, raw[2:]
        raise MultipartError("a part has no end of headers")
    headers: dict[str, str] = {}
    for line in head.split(CRLF):
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise MultipartError("a part has a malformed header line")
        try:
            headers[name.decode("ascii").lower()] = value.strip().decode("utf-8")
        except UnicodeDecodeError:
            raise MultipartError("a part header is not text") from None
    return headers, body


def parse_media_multipart(content_type: str, body: bytes) -> tuple[dict[str, object], MediaPart]:
    """The metadata object and the media part of a federation media answer.

    Raises:
        MultipartError: not ``multipart/mixed`` with a boundary, not exactly
            two parts, a first part that is not a JSON object, or a second part
            with neither content nor a ``Location``.
    """
    boundary = boundary_of(content_type).encode("ascii")
    delimiter = CRLF + b"--" + boundary
    # The first delimiter may start the body (no preamble) or follow a preamble line.
    text = CRLF + body
    start = text.find(delimiter)
    if start < 0:
        raise MultipartError("the body has no multipart boundary")
    rest = text[start + len(delimiter):]
    parts: list[bytes] = []
    while True:
        if rest.startswith(b"--"):
            break  # close delimiter; anything after it is the epilogue
        line_end = rest.find(CRLF)
        if line_end < 0 or rest[:line_end].strip(b" \t"):
            raise MultipartError("a boundary line has trailing garbage")
        rest = rest[line_end + 2:]
        end = rest.find(delimiter)
        if end < 0:
            raise MultipartError("the body ends without a closing boundary")
        parts.append(rest[:end])
        rest = rest[end + len(delimiter):]
    if len(parts) != 2:
        raise MultipartError(f"expected 2 parts, got {len(parts)}")
    meta_headers, meta_body = _parse_part(parts[0])
    meta_type = meta_headers.get("content-type", "").partition(";")[0].strip().lower()
    if meta_type != "application/json":
        raise MultipartError("the first part is not application/json")
    try:
        metadata = json.loads(meta_body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MultipartError("the first part is not valid JSON") from None
    if not isinstance(metadata, dict):
        raise MultipartError("the first part is not a JSON object")
    headers, media = _parse_part(parts[1])
    return metadata, MediaPart(headers=headers, body=media, location=headers.get("location"))
