"""Inbound federation requests: X-Matrix authentication and the servlet base class.

``FederationAuthenticator.authenticate_request(request, content)`` returns the
origin server name of a request whose ``Authorization: X-Matrix`` header
verifies, and otherwise raises:

* 401 ``M_UNAUTHORIZED``: no X-Matrix header, a malformed one, a
  ``destination`` that is not us, an invalid origin, an unknown key or a
  signature that does not verify;
* 403 ``M_FORBIDDEN``: the origin is not in ``federation_domain_whitelist``.

The signed object is rebuilt from the request exactly as received: its method,
its raw request target (path and query, still percent-encoded), the origin, our
server name, and the parsed JSON body if there is one. If the request carries
several X-Matrix headers, all must name the same origin and one must verify.

``BaseFederationServlet`` subclasses define ``async on_GET(self, origin,
content, request, **path_args)`` (and ``on_PUT``/``on_POST``/``on_DELETE``):
the request is authenticated first, the JSON body of PUT/POST parsed
(``content``; None for GET/DELETE), and, if the servlet sets ``ROOM_ID_ARG``,
the room's server ACL applied (403 ``M_FORBIDDEN``), before the handler runs.
If the authenticator has a ``FederationRateLimiter`` (``rc_federation``), the
origin's request is admitted through it right after authentication: it may
be delayed, queued behind the origin's other requests, or refused with 429.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, ClassVar, Coroutine, Optional, Protocol

from matrixd.api.errors import AuthError, Codes, MatrixError, SignatureVerifyError
from matrixd.crypto.request_auth import XMatrixHeaderError, parse_x_matrix_header, request_signing_json
from matrixd.federation.acl import ServerAclChecker
from matrixd.handlers.federation_ratelimit import FederationRateLimiter
from matrixd.http.request import MatrixRequest
from matrixd.http.server import JsonResource, RestServlet, ServletResult
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import is_valid_server_name
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]


class JsonVerifier(Protocol):
    """What the authenticator needs of the keyring (``matrixd.crypto.keyring.Keyring``)."""

    async def verify_json_for_server(self, server_name: str, json_obj: JsonDict, valid_until_ms: int) -> None: ...


def _unauthorized(msg: str) -> MatrixError:
    return MatrixError(401, msg, Codes.UNAUTHORIZED)


class FederationAuthenticator:
    """Establishes which server sent a request (see the module docstring)."""

    def __init__(
        self,
        clock: Clock,
        server_name: str,
        keyring: JsonVerifier,
        domain_whitelist: Optional[frozenset[str]] = None,
        ratelimiter: Optional[FederationRateLimiter] = None,
    ) -> None:
        self._clock = clock
        self._server_name = server_name
        self._keyring = keyring
        self._domain_whitelist = domain_whitelist
        # Applied by BaseFederationServlet to every authenticated request (None: unlimited).
        self.ratelimiter = ratelimiter

    async def authenticate_request(self, request: MatrixRequest, content: Optional[JsonDict]) -> str:
        """The authenticated origin of ``request`` (``content``: its parsed JSON body, if any)."""
        headers = request.requestHeaders.getRawHeaders(b"Authorization") or []
        x_matrix = [h for h in headers if h.strip()[:8].lower() == b"x-matrix"]
        if not x_matrix:
            raise _unauthorized("Missing X-Matrix Authorization header")
        try:
            credentials = [parse_x_matrix_header(h) for h in x_matrix]
        except XMatrixHeaderError as e:
            raise _unauthorized(f"Malformed X-Matrix Authorization header: {e}") from None

        origin = credentials[0].origin
        if any(c.origin != origin for c in credentials):
            raise _unauthorized("X-Matrix Authorization headers name different origins")
        if not is_valid_server_name(origin):
            raise _unauthorized("The X-Matrix origin is not a valid server name")
        for c in credentials:
            if c.destination is not None and c.destination != self._server_name:
                raise _unauthorized(f"This request is for {c.destination}, not for {self._server_name}")
        if self._domain_whitelist is not None and origin not in self._domain_whitelist:
            raise AuthError(403, "Federation with this server is not allowed", Codes.FORBIDDEN)

        uri = (request.uri or b"").decode("ascii", "replace")
        error: Optional[MatrixError] = None
        for c in credentials:
            signed = request_signing_json(request.get_method(), uri, origin, self._server_name, content)
            signed["signatures"] = {origin: {c.key: c.sig}}
            try:
                await self._keyring.verify_json_for_server(origin, signed, self._clock.time_msec())
                return origin
            except SignatureVerifyError as e:
                error = _unauthorized(e.msg)
            except ValueError as e:  # content canonical JSON cannot encode (signedjson refuses it)
                error = _unauthorized(f"The request cannot be verified: {e}")
        assert error is not None
        logger.info("[%s] refused a request claiming to be from %s: %s", request.request_id, origin, error.msg)
        raise error


FederationHandler = Callable[..., Awaitable[ServletResult]]


class BaseFederationServlet(RestServlet):
    """A servlet of the federation API: handlers receive the authenticated origin.

    Subclasses set ``PATTERNS`` (``matrixd.http.server.federation_patterns``)
    and define ``on_<METHOD>(self, origin, content, request, **path_args)``.
    ``ROOM_ID_ARG`` names the path argument holding a room id whose server
    ACL applies to the origin (None: no ACL check).
    """

    ROOM_ID_ARG: ClassVar[Optional[str]] = None
    _BODY_METHODS = ("PUT", "POST")

    def __init__(self, authenticator: FederationAuthenticator, acl: Optional[ServerAclChecker] = None) -> None:
        self._authenticator = authenticator
        self._acl = acl
        if self.ROOM_ID_ARG is not None and acl is None:
            raise ValueError(f"{type(self).__name__} checks room ACLs and needs a ServerAclChecker")

    def register(self, resource: JsonResource) -> None:
        if not self.PATTERNS:
            raise ValueError(f"{type(self).__name__} has no PATTERNS")
        found = False
        for method in ("GET", "POST", "PUT", "DELETE"):
            handler = getattr(self, f"on_{method}", None)
            if handler is None:
                continue
            found = True
            resource.register_paths(
                method,
                self.PATTERNS,
                self._wrap(method, handler),
                type(self).__name__,
                cancel_on_disconnect=method in self.CANCEL_ON_DISCONNECT,
            )
        if not found:
            raise ValueError(f"{type(self).__name__} defines no on_<METHOD> callback")

    def _wrap(self, method: str, handler: FederationHandler) -> Callable[..., Coroutine[Any, Any, ServletResult]]:
        async def callback(request: MatrixRequest, **path_args: str) -> ServletResult:
            content: Optional[JsonDict] = None
            if method in self._BODY_METHODS:
                content = parse_json_object_from_request(request)
            origin = await self._authenticator.authenticate_request(request, content)
            limiter = self._authenticator.ratelimiter
            if limiter is None:
                return await self._run(handler, origin, content, request, path_args)
            async with limiter.limit(origin):
                return await self._run(handler, origin, content, request, path_args)

        return callback

    async def _run(
        self, handler: FederationHandler, origin: str, content: Optional[JsonDict], request: MatrixRequest,
        path_args: dict[str, str],
    ) -> ServletResult:
        if self.ROOM_ID_ARG is not None:
            assert self._acl is not None
            await self._acl.check_server_allowed(origin, path_args[self.ROOM_ID_ARG])
        return await handler(origin, content, request, **path_args)
