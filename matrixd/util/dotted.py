"""Dot-separated property paths of the spec's appendix (``content.body``, ``m\\.relates_to``)."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=4096)
def split_dotted_path(path: str) -> tuple[str, ...]:
    """Split on unescaped dots; ``\\.`` is a literal dot and ``\\\\`` a literal backslash."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == "\\" and i + 1 < len(path) and path[i + 1] in ".\\":
            current.append(path[i + 1])
            i += 2
            continue
        if ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return tuple(parts)
