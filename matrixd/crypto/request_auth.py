"""The ``Authorization: X-Matrix`` header of federation requests: signing and strict parsing.

A server signs ``{"method", "uri", "origin", "destination", "content"}`` (the
content only when the request has a body) with the JSON signing algorithm and
sends the signature as::

    Authorization: X-Matrix origin="a.example",destination="b.example",key="ed25519:k",sig="..."

The header follows RFC 9110's credentials grammar (server-server API,
"Request Authentication"): the scheme (case-insensitive), one or more spaces,
then comma-separated ``name=value`` parameters, with optional whitespace
around commas and ``=``. Names are case-insensitive and may appear once;
values are tokens or quoted strings with backslash escapes, and, for older
senders, unquoted values may contain ``:``. Unknown parameters are ignored.
We send the conservative form: one space, lower-case names, every value quoted.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import attrs
import signedjson.sign
from signedjson.types import SigningKey

from matrixd.crypto.keys import key_id

JsonDict = dict[str, Any]

SCHEME = "X-Matrix"
# RFC 9110 5.6.2 tchar
_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# Unquoted values also accept ':' (older servers send key="ed25519:abc" unquoted).
_UNQUOTED_VALUE_CHARS = _TCHARS | {":"}
_OWS = " \t"


class XMatrixHeaderError(ValueError):
    """An ``Authorization`` header is not well-formed X-Matrix credentials."""


@attrs.frozen(slots=True)
class XMatrixCredentials:
    """The parameters of one X-Matrix header. ``destination`` is absent from pre-v1.3 senders."""

    origin: str
    key: str
    sig: str
    destination: Optional[str] = None


def request_signing_json(
    method: str, uri: str, origin: str, destination: str, content: Optional[Any] = None
) -> JsonDict:
    """The object a request's signature covers; ``uri`` is the path with any query string."""
    obj: JsonDict = {"method": method, "uri": uri, "origin": origin, "destination": destination}
    if content is not None:
        obj["content"] = content
    return obj


def sign_request(
    signing_key: SigningKey,
    origin: str,
    destination: str,
    method: str,
    uri: str,
    content: Optional[Any] = None,
) -> bytes:
    """The ``Authorization`` header value for a request from ``origin`` to ``destination``."""
    obj = request_signing_json(method, uri, origin, destination, content)
    signed = signedjson.sign.sign_json(obj, origin, signing_key)
    kid = key_id(signing_key)
    return format_x_matrix_header(
        XMatrixCredentials(origin=origin, destination=destination, key=kid, sig=signed["signatures"][origin][kid])
    )


def format_x_matrix_header(creds: XMatrixCredentials) -> bytes:
    params = [("origin", creds.origin)]
    if creds.destination is not None:
        params.append(("destination", creds.destination))
    params += [("key", creds.key), ("sig", creds.sig)]
    return (SCHEME + " " + ",".join(f"{name}={_quote(value)}" for name, value in params)).encode("utf-8")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_x_matrix_header(header: bytes | str) -> XMatrixCredentials:
    """Parse one ``Authorization`` header value as X-Matrix credentials.

    Raises:
        XMatrixHeaderError: another scheme, a grammar error, a repeated
            parameter, or a missing ``origin``, ``key`` or ``sig``.
    """
    text = header.decode("latin-1") if isinstance(header, bytes) else header
    params = _parse_credentials(text)
    missing = [name for name in ("origin", "key", "sig") if name not in params]
    if missing:
        raise XMatrixHeaderError(f"X-Matrix header lacks {', '.join(missing)}")
    return XMatrixCredentials(
        origin=params["origin"], key=params["key"], sig=params["sig"], destination=params.get("destination")
    )


def _parse_credentials(text: str) -> Mapping[str, str]:
    scheme_end = 0
    while scheme_end < len(text) and text[scheme_end] in _TCHARS:
        scheme_end += 1
    if text[:scheme_end].lower() != SCHEME.lower():
        raise XMatrixHeaderError("Authorization header is not of the X-Matrix scheme")
    pos = scheme_end
    if pos >= len(text) or text[pos] != " ":
        raise XMatrixHeaderError("X-Matrix must be followed by a space and parameters")
    while pos < len(text) and text[pos] == " ":
        pos += 1

    params: dict[str, str] = {}
    n = len(text)
    while True:
        pos = _skip(text, pos, _OWS)
        if pos < n and text[pos] == ",":  # empty list element (RFC 9110 5.6.1: recipients accept them)
            pos += 1
            continue
        if pos >= n:
            break
        start = pos
        while pos < n and text[pos] in _TCHARS:
            pos += 1
        if pos == start:
            raise XMatrixHeaderError(f"expected a parameter name at offset {start}")
        name = text[start:pos].lower()
        pos = _skip(text, pos, _OWS)
        if pos >= n or text[pos] != "=":
            raise XMatrixHeaderError(f"parameter {name!r} has no '=value'")
        pos = _skip(text, pos + 1, _OWS)
        value, pos = _parse_value(text, pos, name)
        if name in params:
            raise XMatrixHeaderError(f"parameter {name!r} is given twice")
        params[name] = value
        pos = _skip(text, pos, _OWS)
        if pos < n and text[pos] != ",":
            raise XMatrixHeaderError(f"expected ',' after parameter {name!r}")
    if not params:
        raise XMatrixHeaderError("X-Matrix header has no parameters")
    return params


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _parse_value(text: str, pos: int, name: str) -> tuple[str, int]:
    n = len(text)
    if pos < n and text[pos] == '"':
        pos += 1
        out: list[str] = []
        while True:
            if pos >= n:
                raise XMatrixHeaderError(f"unterminated quoted value of {name!r}")
            c = text[pos]
            if c == '"':
                return "".join(out), pos + 1
            if c == "\\":
                if pos + 1 >= n or not _is_quotable(text[pos + 1]):
                    raise XMatrixHeaderError(f"bad escape in the value of {name!r}")
                out.append(text[pos + 1])
                pos += 2
                continue
            if not _is_qdtext(c):
                raise XMatrixHeaderError(f"control character in the value of {name!r}")
            out.append(c)
            pos += 1
    start = pos
    while pos < n and text[pos] in _UNQUOTED_VALUE_CHARS:
        pos += 1
    if pos == start:
        raise XMatrixHeaderError(f"parameter {name!r} has an empty or invalid value")
    return text[start:pos], pos


def _is_qdtext(c: str) -> bool:
    # qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
    o = ord(c)
    return c in "\t " or o == 0x21 or 0x23 <= o <= 0x5B or 0x5D <= o <= 0x7E or 0x80 <= o <= 0xFF


def _is_quotable(c: str) -> bool:
    # quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
    o = ord(c)
    return c in "\t " or 0x21 <= o <= 0x7E or 0x80 <= o <= 0xFF
