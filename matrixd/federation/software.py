"""The name and version this server gives other servers (``/version``, ``User-Agent``)."""

from __future__ import annotations

from importlib import metadata

SERVER_SOFTWARE = "matrixd"


def server_version() -> str:
    """The installed matrixd version, or ``dev`` when running from a source tree."""
    try:
        return metadata.version("matrixd")
    except metadata.PackageNotFoundError:
        return "dev"
