"""Sync and pagination tokens.

A :class:`StreamToken` holds one position per stream.  It is what ``/sync``
hands out as ``next_batch`` and takes back as ``since``; because clients move
between sync workers, it carries positions only (no worker identity) and a
version prefix so the format can evolve.  Parsing is strict: anything that is
not exactly a token we could have issued is refused with ``M_INVALID_PARAM``.

A :class:`RoomStreamToken` is a position in one room's timeline used by
``/messages`` and ``prev_batch``: ``t<topological>-<stream>`` for a
topological position, ``s<stream>`` for a stream-only position.
"""

from __future__ import annotations

import enum
from typing import Optional

import attrs

from matrixd.api.errors import InvalidParamError


class StreamName(str, enum.Enum):
    """Every stream whose position a sync token carries, in token order.

    Appending a stream here is backward compatible: older tokens with fewer
    fields parse with the new stream at 0 only while TOKEN_VERSION is unchanged
    and the new stream is declared in ``_OPTIONAL_TAIL``.
    """

    EVENTS = "events"
    RECEIPTS = "receipts"
    ACCOUNT_DATA = "account_data"
    PRESENCE = "presence"
    TYPING = "typing"
    TO_DEVICE = "to_device"
    DEVICE_LISTS = "device_lists"
    PUSH_RULES = "push_rules"


STREAM_ORDER: tuple[StreamName, ...] = tuple(StreamName)
TOKEN_VERSION = "m1"
_OPTIONAL_TAIL: frozenset[StreamName] = frozenset()


@attrs.frozen(slots=True)
class StreamToken:
    """Positions in every stream; each position means "everything up to and including this id"."""

    events: int = 0
    receipts: int = 0
    account_data: int = 0
    presence: int = 0
    typing: int = 0
    to_device: int = 0
    device_lists: int = 0
    push_rules: int = 0

    def get(self, stream: StreamName) -> int:
        return int(getattr(self, stream.value))

    def copy_and_replace(self, stream: StreamName, position: int) -> "StreamToken":
        return attrs.evolve(self, **{stream.value: position})

    def copy_and_advance(self, stream: StreamName, position: int) -> "StreamToken":
        """Replace the position only if it moves forward."""
        if position <= self.get(stream):
            return self
        return self.copy_and_replace(stream, position)

    def is_after(self, other: "StreamToken") -> bool:
        """True if any stream here is ahead of ``other``."""
        return any(self.get(s) > other.get(s) for s in STREAM_ORDER)

    def to_string(self) -> str:
        return TOKEN_VERSION + "_" + "_".join(str(self.get(s)) for s in STREAM_ORDER)

    @classmethod
    def parse(cls, s: str) -> "StreamToken":
        parts = s.split("_") if isinstance(s, str) else []
        if not parts or parts[0] != TOKEN_VERSION:
            raise InvalidParamError(f"Invalid stream token {s!r}")
        values = parts[1:]
        n_required = len(STREAM_ORDER) - len(_OPTIONAL_TAIL)
        if not (n_required <= len(values) <= len(STREAM_ORDER)):
            raise InvalidParamError(f"Invalid stream token {s!r}")
        positions: dict[str, int] = {}
        for stream, raw in zip(STREAM_ORDER, values):
            if not raw.isdigit() or len(raw) > 19:
                raise InvalidParamError(f"Invalid stream token {s!r}")
            positions[stream.value] = int(raw)
        return cls(**positions)

    def __str__(self) -> str:
        return self.to_string()


@attrs.frozen(slots=True, order=False)
class RoomStreamToken:
    """A position in a room timeline: stream ordering, plus depth when topological.

    The stream ordering is negative for backfilled history (the backfill stream counts down).
    """

    stream: int
    topological: Optional[int] = None

    def to_string(self) -> str:
        if self.topological is not None:
            return f"t{self.topological}-{self.stream}"
        return f"s{self.stream}"

    @classmethod
    def parse(cls, s: str) -> "RoomStreamToken":
        try:
            if s.startswith("t"):
                topo, _, stream = s[1:].partition("-")
                return cls(stream=_signed(stream), topological=_nonneg(topo))
            if s.startswith("s"):
                return cls(stream=_signed(s[1:]))
        except ValueError:
            pass
        raise InvalidParamError(f"Invalid pagination token {s!r}")

    @classmethod
    def parse_pagination(cls, s: str) -> "RoomStreamToken":
        """Accept a room token or a whole sync token (clients pass next_batch as `from`)."""
        if s.startswith(TOKEN_VERSION + "_"):
            return cls(stream=StreamToken.parse(s).events)
        return cls.parse(s)

    def __str__(self) -> str:
        return self.to_string()


def _signed(raw: str) -> int:
    return -_nonneg(raw[1:]) if raw.startswith("-") else _nonneg(raw)


def _nonneg(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 19:
        raise ValueError(raw)
    return int(raw)
