"""The request and site classes every matrixd HTTP listener uses.

``MatrixRequest`` adds what the servlet layer relies on to Twisted's request:
a request id for logs, a bounded request body (bodies over the listener's limit
are discarded while they arrive and answered with 413), the client IP (honouring
``X-Forwarded-For`` on listeners behind a reverse proxy), the authenticated
requester once known, and a ``disconnected`` flag so nothing is written to a
closed connection. ``MatrixSite`` builds them and writes the access log, with
secrets redacted from the logged URI.
"""

from __future__ import annotations

import contextvars
import io
import itertools
import logging
import re
import tempfile
from typing import IO, TYPE_CHECKING, Any, Optional, Union

from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.http import Request as HTTPRequest
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

if TYPE_CHECKING:
    from matrixd.types import Requester

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("matrixd.access")

# The id of the request whose code is running; read by the logging filter
# (matrixd.app.logging_setup) so every log line of a request carries its id.
# Twisted runs each coroutine step in the context captured when it started, so
# a value set before ``ensureDeferred`` follows the handler through its awaits.
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "matrixd_request_id", default="-"
)

# Query parameters whose values are secrets and never reach a log line.
REDACTED_QUERY_PARAMS = frozenset({b"access_token", b"loginToken", b"refresh_token", b"token"})
_QUERY_SECRET_RE = re.compile(
    rb"(?<=[?&])(" + b"|".join(re.escape(p) for p in sorted(REDACTED_QUERY_PARAMS)) + rb")=[^&]*"
)

# Bodies up to this size are buffered in memory, larger ones in a temporary file.
_IN_MEMORY_BODY_LIMIT = 100 * 1024
DEFAULT_MAX_REQUEST_BODY_SIZE = 10 * 1024 * 1024

# Request ids are unique per process, across listeners.
_request_numbers = itertools.count(1)


def redact_uri(uri: bytes) -> str:
    """``uri`` for logging: secret query parameters become ``<redacted>``."""
    return _QUERY_SECRET_RE.sub(rb"\1=<redacted>", uri).decode("ascii", errors="replace")


class MatrixRequest(Request):
    """A Twisted request with the extras the matrixd servlet layer relies on."""

    def __init__(self, channel: Any, queued: Any = None) -> None:
        super().__init__(channel)  # type: ignore[no-untyped-call]
        # Twisted drops ``self.channel`` once the response is done; keep the site.
        site = getattr(channel, "site", None)
        self._matrix_site: Optional[MatrixSite] = site if isinstance(site, MatrixSite) else None
        self.request_id = "-"
        # Set by the JsonResource once routed; used by logs and metrics.
        self.servlet_name = "-"
        # Set by Auth implementations so the access log can name the user.
        self.requester: Optional["Requester"] = None
        self.body_too_large = False
        self.disconnected = False
        self._body_size = 0
        self._max_body_size = DEFAULT_MAX_REQUEST_BODY_SIZE
        self._start_time = 0.0

    # -- body handling ---------------------------------------------------------

    def gotLength(self, length: Optional[int]) -> None:
        """Pick where the body goes; a declared length over the limit is refused now."""
        site = self._matrix_site
        if site is not None:
            self._max_body_size = site.max_request_body_size
            self._start_time = site.reactor.seconds()
        self.content: IO[bytes]
        if length is not None and length > self._max_body_size:
            self.body_too_large = True
            self.content = io.BytesIO()
        elif length is not None and length <= _IN_MEMORY_BODY_LIMIT:
            self.content = io.BytesIO()
        else:
            self.content = tempfile.TemporaryFile()

    def handleContentChunk(self, data: bytes) -> None:
        """Buffer a body chunk, or drop it once the body is known to be too large."""
        self._body_size += len(data)
        if self._body_size > self._max_body_size:
            self.body_too_large = True
        if self.body_too_large:
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self.request_id = f"{command.decode('ascii', 'replace')}-{next(_request_numbers)}"
        super().requestReceived(command, path, version)  # type: ignore[no-untyped-call]

    # -- connection state ------------------------------------------------------

    def connectionLost(self, reason: Failure) -> None:
        """Remember the client went away so late responses are dropped, and log it."""
        self.disconnected = True
        if not self.finished:
            logger.info("[%s] client disconnected before the response was sent", self.request_id)
            if self._matrix_site is not None:
                self._matrix_site.log_access(self, disconnected=True)
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    # -- typed wrappers of Twisted's untyped request API ------------------------

    def setHeader(self, name: Union[bytes, str], value: Union[bytes, str]) -> None:
        """Set a response header (replacing any earlier value)."""
        super().setHeader(name, value)  # type: ignore[no-untyped-call]

    def write(self, data: bytes) -> None:
        """Write part of the response body (the headers go first)."""
        super().write(data)  # type: ignore[no-untyped-call]

    def finish(self) -> None:
        """End the response. Use the ``respond_with_*`` helpers rather than this."""
        super().finish()  # type: ignore[no-untyped-call]

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        super().registerProducer(producer, streaming)  # type: ignore[no-untyped-call]

    def unregisterProducer(self) -> None:
        super().unregisterProducer()  # type: ignore[no-untyped-call]

    def loseConnection(self) -> None:
        """Drop the connection without finishing the response."""
        super().loseConnection()  # type: ignore[no-untyped-call]

    # -- accessors -------------------------------------------------------------

    @property
    def max_body_size(self) -> int:
        """The largest request body this request's listener accepts."""
        return self._max_body_size

    def get_method(self) -> str:
        """The HTTP method, upper-case."""
        return (self.method or b"").decode("ascii", errors="replace").upper()

    def get_redacted_uri(self) -> str:
        """The request URI with secret query parameters redacted, for logs."""
        return redact_uri(self.uri or b"")

    def get_client_ip(self) -> str:
        """The client's IP; the first ``X-Forwarded-For`` hop on proxied listeners."""
        site = self._matrix_site
        if site is not None and site.x_forwarded:
            forwarded = self.getHeader(b"X-Forwarded-For")
            if forwarded:
                return forwarded.split(b",")[0].strip().decode("ascii", errors="replace")
        addr = self.getClientAddress()  # type: ignore[no-untyped-call]
        host = getattr(addr, "host", None)
        return str(host) if host is not None else "-"

    def get_user_agent(self, default: str = "") -> str:
        ua = self.requestHeaders.getRawHeaders(b"User-Agent")
        return ua[-1].decode("utf-8", errors="replace") if ua else default

    def elapsed_seconds(self) -> float:
        """Seconds since the request's headers arrived, on the site's clock."""
        if self._matrix_site is None:
            return 0.0
        return max(0.0, self._matrix_site.reactor.seconds() - self._start_time)


class MatrixSite(Site):
    """A listener's site: builds ``MatrixRequest``s and writes the access log.

    Args:
        resource: the root resource (usually a ``JsonResource``).
        reactor: the reactor used for timestamps and connection timeouts.
        max_request_body_size: bodies larger than this get 413 ``M_TOO_LARGE``.
        x_forwarded: trust ``X-Forwarded-For`` for the client IP (behind a proxy).
        site_tag: a name for this listener in logs.
        timeout: idle connection timeout in seconds, ``None`` for none.
    """

    # Twisted's "Starting factory" lines add nothing to our own "Listening on" log.
    noisy = False

    def __init__(
        self,
        resource: IResource,
        reactor: IReactorTime,
        *,
        max_request_body_size: int = DEFAULT_MAX_REQUEST_BODY_SIZE,
        x_forwarded: bool = False,
        site_tag: str = "http",
        timeout: Optional[float] = 60,
    ) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            resource,
            requestFactory=MatrixRequest,
            reactor=reactor,
            timeout=timeout,
            parsePOSTFormSubmission=False,
        )
        self.max_request_body_size = max_request_body_size
        self.x_forwarded = x_forwarded
        self.site_tag = site_tag

    def log(self, request: HTTPRequest) -> None:
        """Called by Twisted when a response finishes; replaces the combined log."""
        if isinstance(request, MatrixRequest):
            self.log_access(request, disconnected=False)

    def log_access(self, request: MatrixRequest, disconnected: bool) -> None:
        """One grep-able line per request; never contains access tokens."""
        user = request.requester.user_id if request.requester is not None else "-"
        status = "disconnected" if disconnected else str(request.code)
        access_logger.info(
            "%s %s %s %s \"%s %s %s\" %s %dB %.3fs %s %r",
            self.site_tag,
            request.request_id,
            request.get_client_ip(),
            user,
            request.get_method(),
            request.get_redacted_uri(),
            (request.clientproto or b"-").decode("ascii", errors="replace"),
            status,
            request.sentLength,
            request.elapsed_seconds(),
            request.servlet_name,
            request.get_user_agent("-"),
        )
