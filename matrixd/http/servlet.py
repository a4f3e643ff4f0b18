"""Request parsing for servlets: JSON bodies, query parameters, access tokens.

Every helper raises a 400 ``MatrixError`` that names the bad parameter, so a
servlet can parse in straight-line code and let the JSON edge
(``matrixd.http.server``) report the problem:

* body not UTF-8 / not JSON / ``NaN`` or ``Infinity`` / lone surrogates: ``M_NOT_JSON``;
* body JSON but not an object: ``M_BAD_JSON``;
* required query parameter absent: ``M_MISSING_PARAM``;
* query parameter malformed or out of range: ``M_INVALID_PARAM``.

Query parameters are read from ``request.args`` (``dict[bytes, list[bytes]]``,
already percent-decoded by Twisted); the first value wins for the single-value
helpers.

Body models (typed attrs classes) live in ``matrixd.http.validation`` and are
re-exported here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal, Optional, TypeVar, overload

from twisted.web.server import Request

from matrixd.api.errors import (
    Codes,
    InvalidClientTokenError,
    MatrixError,
    MissingClientTokenError,
    MissingParamError,
)
from matrixd.http.validation import get_field, json_field, validate_json_object
from matrixd.types import JsonDict

__all__ = [
    "get_access_token_from_request",
    "get_field",
    "has_access_token",
    "json_field",
    "parse_and_validate_json_object_from_request",
    "parse_boolean",
    "parse_integer",
    "parse_integer_from_args",
    "parse_json_object_from_query",
    "parse_json_object_from_request",
    "parse_json_value_from_request",
    "parse_string",
    "parse_strings_from_args",
    "validate_json_object",
]

T = TypeVar("T")
QueryArgs = Mapping[bytes, Sequence[bytes]]

_INTEGER_RE = re.compile(r"^-?[0-9]+$")
# A JSON string escape for a UTF-16 surrogate; only then can a lone one appear.
_SURROGATE_ESCAPE_RE = re.compile(rb"\\u[dD][89a-fA-F]")


def _not_json(msg: str) -> MatrixError:
    return MatrixError(400, msg, Codes.NOT_JSON)


def _invalid(msg: str) -> MatrixError:
    return MatrixError(400, msg, Codes.INVALID_PARAM)


def _reject_constant(name: str) -> Any:
    raise _not_json(f"Content not JSON: {name} is not allowed.")


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def decode_json_bytes(content: bytes) -> Any:
    """Parse strict JSON: UTF-8 only, no ``NaN``/``Infinity``, no lone surrogates."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_json("Content not JSON: it is not valid UTF-8.") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except MatrixError:
        raise
    except (ValueError, RecursionError):
        raise _not_json("Content not JSON.") from None
    if _SURROGATE_ESCAPE_RE.search(content) and _has_lone_surrogate(value):
        raise _not_json("Content not JSON: it contains an unpaired UTF-16 surrogate.")
    return value


def _read_body(request: Request) -> bytes:
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    body: bytes = content.read()
    return body


def parse_json_value_from_request(request: Request, allow_empty_body: bool = False) -> Any:
    """The request body as any JSON value; ``None`` for an empty body if allowed."""
    body = _read_body(request)
    if not body and allow_empty_body:
        return None
    return decode_json_bytes(body)


def parse_json_object_from_request(request: Request, allow_empty_body: bool = False) -> JsonDict:
    """The request body as a JSON object (``{}`` for an empty body if allowed).

    Raises:
        MatrixError: 400 ``M_NOT_JSON`` if the body is not JSON, 400 ``M_BAD_JSON``
            if it is JSON but not an object.
    """
    body = _read_body(request)
    if not body and allow_empty_body:
        return {}
    value = decode_json_bytes(body)
    if not isinstance(value, dict):
        raise MatrixError(400, "Content must be a JSON object.", Codes.BAD_JSON)
    return value


def parse_and_validate_json_object_from_request(request: Request, model: type[T]) -> T:
    """The request body checked against an attrs model (see ``matrixd.http.validation``)."""
    return validate_json_object(parse_json_object_from_request(request), model)


# ---------------------------------------------------------------------------
# Query parameters
# ---------------------------------------------------------------------------


def _args(request: Request) -> QueryArgs:
    return request.args or {}


def _first_arg(args: QueryArgs, name: str) -> Optional[str]:
    values = args.get(name.encode("ascii"))
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(f"Query parameter '{name}' is not valid UTF-8") from None


@overload
def parse_integer_from_args(
    args: QueryArgs, name: str, default: int, required: bool = False, *,
    min_value: Optional[int] = 0, max_value: Optional[int] = None,
) -> int: ...
@overload
def parse_integer_from_args(
    args: QueryArgs, name: str, default: None = None, *, required: Literal[True],
    min_value: Optional[int] = 0, max_value: Optional[int] = None,
) -> int: ...
@overload
def parse_integer_from_args(
    args: QueryArgs, name: str, default: Optional[int] = None, required: bool = False, *,
    min_value: Optional[int] = 0, max_value: Optional[int] = None,
) -> Optional[int]: ...
def parse_integer_from_args(
    args: QueryArgs,
    name: str,
    default: Optional[int] = None,
    required: bool = False,
    *,
    min_value: Optional[int] = 0,
    max_value: Optional[int] = None,
) -> Optional[int]:
    """An integer query parameter; negative values are refused unless ``min_value`` allows."""
    raw = _first_arg(args, name)
    if raw is None:
        if required:
            raise MissingParamError(f"Missing required query parameter '{name}'")
        return default
    if not _INTEGER_RE.match(raw):
        raise _invalid(f"Query parameter '{name}' must be an integer, got {raw!r}")
    value = int(raw)
    if min_value is not None and value < min_value:
        raise _invalid(f"Query parameter '{name}' must be at least {min_value}, got {value}")
    if max_value is not None and value > max_value:
        raise _invalid(f"Query parameter '{name}' must be at most {max_value}, got {value}")
    return value


@overload
def parse_integer(
    request: Request, name: str, default: int, required: bool = False, *,
    min_value: Optional[int] = 0, max_value: Optional[int] = None,
) -> int: ...
@overload
def parse_integer(
    request: Request, name: str, default: None = None, *, required: Literal[True],
    min_value: Optional[int] = 0, max_value: Optional[int] = None,
) -> int: ...
@overload
def parse_integer(
    request: Request, name: str, default: Optional[int] = None, required: bool = False, *,
    min_value: Optional[int] = 0, max_value: Optional[int] = None,
) -> Optional[int]: ...
def parse_integer(
    request: Request,
    name: str,
    default: Optional[int] = None,
    required: bool = False,
    *,
    min_value: Optional[int] = 0,
    max_value: Optional[int] = None,
) -> Optional[int]:
    """An integer query parameter of ``request`` (see ``parse_integer_from_args``)."""
    return parse_integer_from_args(
        _args(request), name, default, required, min_value=min_value, max_value=max_value
    )


@overload
def parse_boolean(request: Request, name: str, default: bool, required: bool = False) -> bool: ...
@overload
def parse_boolean(request: Request, name: str, default: None = None, *, required: Literal[True]) -> bool: ...
@overload
def parse_boolean(
    request: Request, name: str, default: Optional[bool] = None, required: bool = False
) -> Optional[bool]: ...
def parse_boolean(
    request: Request, name: str, default: Optional[bool] = None, required: bool = False
) -> Optional[bool]:
    """A ``true``/``false`` query parameter (the only spellings the spec uses)."""
    raw = _first_arg(_args(request), name)
    if raw is None:
        if required:
            raise MissingParamError(f"Missing required query parameter '{name}'")
        return default
    if raw == "true":
        return True
    if raw == "false":
        return False
    raise _invalid(f"Query parameter '{name}' must be 'true' or 'false', got {raw!r}")


@overload
def parse_string(
    request: Request, name: str, default: str, required: bool = False,
    allowed_values: Optional[Collection[str]] = None,
) -> str: ...
@overload
def parse_string(
    request: Request, name: str, default: None = None, *, required: Literal[True],
    allowed_values: Optional[Collection[str]] = None,
) -> str: ...
@overload
def parse_string(
    request: Request, name: str, default: Optional[str] = None, required: bool = False,
    allowed_values: Optional[Collection[str]] = None,
) -> Optional[str]: ...
def parse_string(
    request: Request,
    name: str,
    default: Optional[str] = None,
    required: bool = False,
    allowed_values: Optional[Collection[str]] = None,
) -> Optional[str]:
    """A string query parameter, optionally restricted to ``allowed_values``."""
    raw = _first_arg(_args(request), name)
    if raw is None:
        if required:
            raise MissingParamError(f"Missing required query parameter '{name}'")
        return default
    if allowed_values is not None and raw not in allowed_values:
        choices = ", ".join(repr(v) for v in sorted(allowed_values))
        raise _invalid(f"Query parameter '{name}' must be one of {choices}, got {raw!r}")
    return raw


@overload
def parse_strings_from_args(
    args: QueryArgs, name: str, default: list[str], required: bool = False,
    allowed_values: Optional[Collection[str]] = None,
) -> list[str]: ...
@overload
def parse_strings_from_args(
    args: QueryArgs, name: str, default: None = None, *, required: Literal[True],
    allowed_values: Optional[Collection[str]] = None,
) -> list[str]: ...
@overload
def parse_strings_from_args(
    args: QueryArgs, name: str, default: Optional[list[str]] = None, required: bool = False,
    allowed_values: Optional[Collection[str]] = None,
) -> Optional[list[str]]: ...
def parse_strings_from_args(
    args: QueryArgs,
    name: str,
    default: Optional[list[str]] = None,
    required: bool = False,
    allowed_values: Optional[Collection[str]] = None,
) -> Optional[list[str]]:
    """Every value of a repeated query parameter (``?type=a&type=b``), in order."""
    values = args.get(name.encode("ascii"))
    if not values:
        if required:
            raise MissingParamError(f"Missing required query parameter '{name}'")
        return default
    result: list[str] = []
    for raw in values:
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid(f"Query parameter '{name}' is not valid UTF-8") from None
        if allowed_values is not None and value not in allowed_values:
            choices = ", ".join(repr(v) for v in sorted(allowed_values))
            raise _invalid(f"Query parameter '{name}' must be one of {choices}, got {value!r}")
        result.append(value)
    return result


def parse_json_object_from_query(
    request: Request, name: str, required: bool = False
) -> Optional[JsonDict]:
    """A query parameter holding a JSON object (e.g. ``/sync?filter={...}``)."""
    raw = _first_arg(_args(request), name)
    if raw is None:
        if required:
            raise MissingParamError(f"Missing required query parameter '{name}'")
        return None
    try:
        value = decode_json_bytes(raw.encode("utf-8"))
    except MatrixError:
        raise MatrixError(400, f"Query parameter '{name}' is not JSON", Codes.NOT_JSON) from None
    if not isinstance(value, dict):
        raise MatrixError(400, f"Query parameter '{name}' must be a JSON object", Codes.BAD_JSON)
    return value


# ---------------------------------------------------------------------------
# Access tokens
# ---------------------------------------------------------------------------


def has_access_token(request: Request) -> bool:
    """Whether the request tries to authenticate (header or query parameter)."""
    return bool(request.requestHeaders.hasHeader(b"Authorization") or _args(request).get(b"access_token"))


def get_access_token_from_request(request: Request) -> str:
    """The access token from ``Authorization: Bearer <token>`` or ``?access_token=``.

    Raises:
        MissingClientTokenError: 401 ``M_MISSING_TOKEN`` if there is no token, the
            header is not a single well-formed Bearer credential, or a token is
            given both ways (which one would be meant is ambiguous).
        InvalidClientTokenError: 401 ``M_UNKNOWN_TOKEN`` if the token has
            characters no token of ours can contain.
    """
    headers = request.requestHeaders.getRawHeaders(b"Authorization")
    query = _args(request).get(b"access_token")
    if headers:
        if query:
            raise MissingClientTokenError(
                "Mixing the Authorization header and the access_token query parameter is not allowed."
            )
        if len(headers) > 1:
            raise MissingClientTokenError("Too many Authorization headers.")
        scheme, _, credential = headers[0].strip().partition(b" ")
        credential = credential.strip()
        if scheme.lower() != b"bearer" or not credential:
            raise MissingClientTokenError("Invalid Authorization header: expected 'Bearer <token>'.")
        raw = credential
    elif query:
        if len(query) > 1:
            raise MissingClientTokenError("Too many access_token query parameters.")
        raw = query[0]
        if not raw:
            raise MissingClientTokenError()
    else:
        raise MissingClientTokenError()
    try:
        token = raw.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidClientTokenError() from None
    if not token.isprintable() or " " in token:
        raise InvalidClientTokenError()
    return token
