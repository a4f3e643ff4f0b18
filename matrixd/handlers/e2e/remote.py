"""The remote half of the e2e key APIs: users and devices on other servers.

Everything the client-server handlers need from other servers goes through
:class:`RemoteE2EKeys`, one call per destination, so the local paths never
branch on federation.  Until the federation client exists the server is wired
with :class:`NoFederationE2EKeys`, for which every server is unreachable:
``/keys/query`` and ``/keys/claim`` then list it under ``failures`` as the
spec prescribes for servers that could not be reached.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence

from matrixd.types import JsonDict


class RemoteServerUnreachable(Exception):
    """A destination could not be asked; the handlers report it under ``failures``."""

    def __init__(self, destination: str, reason: str = "Not reachable") -> None:
        super().__init__(f"{destination}: {reason}")
        self.destination = destination
        self.reason = reason


class RemoteE2EKeys(Protocol):
    async def query_keys(self, destination: str, device_keys: Mapping[str, Sequence[str]],
                         timeout_ms: int) -> JsonDict:
        """The destination's federation ``/user/keys/query`` response
        (``device_keys``, ``master_keys``, ``self_signing_keys``)."""
        ...

    async def claim_keys(self, destination: str, one_time_keys: Mapping[str, Mapping[str, str]],
                         timeout_ms: int) -> JsonDict:
        """The destination's federation ``/user/keys/claim`` response (``one_time_keys``)."""
        ...


class NoFederationE2EKeys:
    """Every remote server is unreachable (this process has no federation client)."""

    async def query_keys(self, destination: str, device_keys: Mapping[str, Sequence[str]],
                         timeout_ms: int) -> JsonDict:
        raise RemoteServerUnreachable(destination, "Federation is not available")

    async def claim_keys(self, destination: str, one_time_keys: Mapping[str, Mapping[str, str]],
                         timeout_ms: int) -> JsonDict:
        raise RemoteServerUnreachable(destination, "Federation is not available")


def failure_entry(exc: RemoteServerUnreachable) -> JsonDict:
    """What ``failures[destination]`` holds for an unreachable server."""
    return {"status": 503, "message": exc.reason}
