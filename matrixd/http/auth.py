"""The interface servlets use to authenticate requests.

Servlets take an ``Auth`` in their constructor and call ``get_user_by_req`` first
thing; the implementation (access tokens, devices, appservices, guests, expiry)
lives with the accounts code and is chosen once in ``matrixd/app/``. Tests pass
``matrixd.testing.http.FakeAuth``.
"""

from __future__ import annotations

from typing import Protocol

from matrixd.http.request import MatrixRequest
from matrixd.types import Requester


class Auth(Protocol):
    async def get_user_by_req(
        self, request: MatrixRequest, allow_guest: bool = False, allow_expired: bool = False
    ) -> Requester:
        """The requester behind the request's access token.

        Implementations read the token with
        ``matrixd.http.servlet.get_access_token_from_request`` and set
        ``request.requester`` so the access log names the user.

        Args:
            allow_guest: accept guest access tokens; otherwise a guest gets 403
                ``M_GUEST_ACCESS_FORBIDDEN``.
            allow_expired: accept an expired (refreshable) access token, for the
                endpoints a client uses to refresh or log out.

        Raises:
            MissingClientTokenError: 401 ``M_MISSING_TOKEN``.
            InvalidClientTokenError: 401 ``M_UNKNOWN_TOKEN`` (``soft_logout`` set
                for expired tokens).
            AuthError: 403 for guests where not allowed, deactivated users, ...
        """
        ...
