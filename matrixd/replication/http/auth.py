"""Authenticating internal HTTP requests with the shared ``worker_replication_secret``.

The secret never travels: a request carries an HMAC-SHA256 over its method,
path, worker name, a timestamp and its body::

    Authorization: MatrixdReplication worker="sync1",ts="1700000000000",mac="<64 hex>"

The master recomputes the MAC and refuses requests whose timestamp is more
than :data:`MAX_SKEW_MS` away from its clock (a captured request cannot be
replayed later; within the window a replay is harmless because every
endpoint is idempotent by transaction id).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Optional

import attrs

from matrixd.api.errors import Codes, MatrixError
from matrixd.replication.commands import is_valid_worker_name

SCHEME = "MatrixdReplication"
MAX_SKEW_MS = 5 * 60 * 1000

_HEADER_RE = re.compile(
    rf'^{SCHEME} worker="(?P<worker>[^"]+)",ts="(?P<ts>[0-9]{{1,16}})",mac="(?P<mac>[0-9a-f]{{64}})"$'
)


@attrs.frozen(slots=True)
class SignedRequest:
    """Who sent an authenticated internal request."""

    worker_name: str
    ts: int


def request_mac(secret: str, *, method: str, path: str, worker_name: str, ts: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of one request under ``secret``."""
    prefix = f"{method.upper()}\n{path}\n{worker_name}\n{ts}\n".encode("utf-8")
    return hmac.new(secret.encode("utf-8"), prefix + body, hashlib.sha256).hexdigest()


def authorization_header(secret: str, *, method: str, path: str, worker_name: str, ts: int, body: bytes) -> str:
    """The ``Authorization`` header value for a request from ``worker_name``."""
    mac = request_mac(secret, method=method, path=path, worker_name=worker_name, ts=ts, body=body)
    return f'{SCHEME} worker="{worker_name}",ts="{ts}",mac="{mac}"'


def _unauthorized(msg: str) -> MatrixError:
    return MatrixError(401, msg, Codes.UNAUTHORIZED)


def verify_request(
    secret: Optional[str], header: Optional[str], *, method: str, path: str, body: bytes, now_ms: int
) -> SignedRequest:
    """Check an internal request's ``Authorization`` header.

    Raises:
        MatrixError: 401 ``M_UNAUTHORIZED`` when the header is missing or
            malformed, the MAC does not match, the timestamp is outside the
            window, or this process has no secret (internal HTTP disabled).
    """
    if not secret:
        raise MatrixError(403, "This process does not accept internal requests", Codes.FORBIDDEN)
    if header is None:
        raise _unauthorized("Missing internal request authentication")
    m = _HEADER_RE.match(header)
    if m is None:
        raise _unauthorized("Malformed internal request authentication")
    worker, ts = m.group("worker"), int(m.group("ts"))
    if not is_valid_worker_name(worker) and worker != "main":
        raise _unauthorized("Malformed internal request authentication")
    expected = request_mac(secret, method=method, path=path, worker_name=worker, ts=ts, body=body)
    if not hmac.compare_digest(expected, m.group("mac")):
        raise _unauthorized("Internal request authentication failed")
    if abs(now_ms - ts) > MAX_SKEW_MS:
        raise _unauthorized("Internal request timestamp is too far from the master's clock")
    return SignedRequest(worker, ts)
