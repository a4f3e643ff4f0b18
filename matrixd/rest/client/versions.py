"""``GET /_matrix/client/versions``: the spec versions and unstable features we serve."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, prefixed_patterns
from matrixd.types import JsonDict

# Every Client-Server API release up to the newest in the spec copy we build from.
SUPPORTED_SPEC_VERSIONS: tuple[str, ...] = (
    "r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
    *(f"v1.{minor}" for minor in range(1, 20)),
)

# Flags older clients still look for before using features that are now part of
# the versions above.
DEFAULT_UNSTABLE_FEATURES: Mapping[str, bool] = {
    "m.lazy_load_members": True,
    "m.id_access_token": True,
    "m.separate_add_and_bind": True,
    "m.require_identity_server": False,
    "org.matrix.e2e_cross_signing": True,
}


class VersionsServlet(RestServlet):
    """Unauthenticated; the same answer for everyone."""

    PATTERNS = prefixed_patterns("/_matrix/client", "/versions")

    def __init__(self, unstable_features: Optional[Mapping[str, bool]] = None) -> None:
        self._body: JsonDict = {
            "versions": list(SUPPORTED_SPEC_VERSIONS),
            "unstable_features": dict(
                DEFAULT_UNSTABLE_FEATURES if unstable_features is None else unstable_features
            ),
        }

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        return 200, self._body
