"""The stream registry: every replicated stream is declared once, as one :class:`ReplicationStream`.

A stream is a sequence of rows numbered by a monotonically increasing token
(its stream id), written by one process (the master) and read by all.  Its
entry says everything the machinery needs, in every process:

``name``
    the wire name (``[a-z][a-z0-9_]*``), used in SUBSCRIBE/POSITION/RDATA.
``row_type``
    a frozen attrs class whose fields are JSON values (str, int, bool, float,
    None, tuples/lists of those, dicts); rows travel as JSON objects with the
    field names as keys, decoded with :func:`decode_row` (unknown keys are
    ignored so rows can grow fields; a missing field without a default, or a
    wrong type, is an error).  The row does not repeat its token.
``get_updates(from_token, to_token, limit) -> StreamPage``
    the rows with ``from_token < token <= to_token``, oldest first, at most
    ``limit`` tokens' worth and never splitting the rows of one token across
    pages.  ``StreamPage.new_token`` is how far the page reaches (``to_token``
    unless ``limited``).  DB-backed streams read the database; in-memory
    streams (typing) read the writer's memory (on workers, over the internal
    HTTP API).  Used for catch-up on workers and by the master's publisher.
``current_token()``
    on the writer only: the announceable position (for DB streams
    :meth:`StreamIdGenerator.get_current_token`, never past an unfinished id);
    ``None`` in readers.
``invalidate(rows)``
    synchronous cache invalidation, run in EVERY process (master included)
    before the position advances.  Keep it cheap and idempotent.
``wake_keys(row)``
    the Notifier keys a row concerns (room ids, user ids).  A stream with no
    ``notifier_stream`` wakes them without moving any position.
``notifier_stream``
    the sync-token stream (:class:`StreamName`) this stream's position feeds,
    or ``None`` for streams no sync token carries (backfill, caches, deltas).
``writer``
    the instance that writes it (``"master"`` for now).
``in_memory`` / ``reset``
    rows live only in the writer's memory: a new master epoch (master restart)
    means the old positions are meaningless, so readers call ``reset()`` to
    drop their copy of the state and adopt the new master's position.

Adding a stream (receipts, typing, account_data, ...) is one function that
builds its entry from the stores of the process, plus one
``registry.register(...)`` line in each role's wiring, plus the writer calling
``publisher.notify("<name>")`` after each commit (see
:class:`matrixd.replication.publisher.StreamPublisher`).
"""

from __future__ import annotations

import logging
import types
import typing
from typing import Any, Awaitable, Callable, Generic, Iterable, Iterator, Optional, Sequence, TypeVar, Union

import attrs

from matrixd.replication.commands import JsonDict, is_valid_stream_name
from matrixd.streams.token import StreamName

logger = logging.getLogger(__name__)

RowT = TypeVar("RowT")


class RowDecodeError(ValueError):
    """A row on the wire that does not fit the stream's row type."""


@attrs.frozen(slots=True)
class StreamPage(Generic[RowT]):
    """One page of :attr:`ReplicationStream.get_updates`.

    Attributes:
        rows: ``(token, row)`` pairs, tokens ascending; all rows of a token together.
        new_token: everything up to here has been returned (``to_token`` unless limited).
        limited: rows may remain in ``(new_token, to_token]``.
    """

    rows: Sequence[tuple[int, RowT]]
    new_token: int
    limited: bool


UpdateFetcher = Callable[[int, int, int], Awaitable[StreamPage[RowT]]]


def _no_invalidation(rows: Sequence[Any]) -> None:
    return None


def _no_keys(row: Any) -> Iterable[str]:
    return ()


@attrs.frozen(slots=True)
class ReplicationStream(Generic[RowT]):
    """A registry entry: everything about one stream (see the module docstring)."""

    name: str
    row_type: type[RowT]
    get_updates: UpdateFetcher[RowT]
    current_token: Optional[Callable[[], int]] = None
    invalidate: Callable[[Sequence[RowT]], None] = _no_invalidation
    wake_keys: Callable[[RowT], Iterable[str]] = _no_keys
    notifier_stream: Optional[StreamName] = None
    writer: str = "master"
    in_memory: bool = False
    reset: Optional[Callable[[], None]] = None

    def __attrs_post_init__(self) -> None:
        if not is_valid_stream_name(self.name):
            raise ValueError(f"invalid stream name {self.name!r}")
        if not attrs.has(self.row_type):
            raise TypeError(f"stream {self.name}: row type {self.row_type!r} must be an attrs class")

    def encode_row(self, row: RowT) -> JsonDict:
        return encode_row(row)

    def decode_row(self, obj: JsonDict) -> RowT:
        return decode_row(self.row_type, obj)


class StreamRegistry:
    """The streams this process knows, by name."""

    def __init__(self, streams: Iterable[ReplicationStream[Any]] = ()) -> None:
        self._streams: dict[str, ReplicationStream[Any]] = {}
        for s in streams:
            self.register(s)

    def register(self, stream: ReplicationStream[Any]) -> None:
        if stream.name in self._streams:
            raise ValueError(f"stream {stream.name!r} is already registered")
        self._streams[stream.name] = stream

    def get(self, name: str) -> ReplicationStream[Any]:
        """The stream called ``name``; KeyError if unknown."""
        return self._streams[name]

    def __contains__(self, name: object) -> bool:
        return name in self._streams

    def __iter__(self) -> Iterator[ReplicationStream[Any]]:
        return iter(list(self._streams.values()))

    def names(self) -> list[str]:
        return list(self._streams)


def group_by_token(rows: Sequence[tuple[int, RowT]]) -> list[tuple[int, list[RowT]]]:
    """``[(token, [row, ...]), ...]`` in order, one entry per token."""
    groups: list[tuple[int, list[RowT]]] = []
    for token, row in rows:
        if groups and groups[-1][0] == token:
            groups[-1][1].append(row)
        else:
            groups.append((token, [row]))
    return groups


def page_from_rows(rows: Sequence[tuple[int, RowT]], to_token: int, limit: int, tokens_returned: int) -> StreamPage[RowT]:
    """The usual page shape: limited when ``limit`` tokens came back, reaching the last one."""
    if tokens_returned >= limit and rows:
        return StreamPage(rows, rows[-1][0], True)
    return StreamPage(rows, to_token, False)


# -- row codec -------------------------------------------------------------------


def encode_row(row: Any) -> JsonDict:
    """The JSON object for an attrs row (field names as keys; tuples become lists)."""
    out: JsonDict = {}
    for field in attrs.fields(type(row)):
        value = getattr(row, field.name)
        out[field.name] = list(value) if isinstance(value, tuple) else value
    return out


_resolved: set[type] = set()


def decode_row(row_type: type[RowT], obj: Any) -> RowT:
    """Build ``row_type`` from a JSON object, checking each field's type.

    Raises:
        RowDecodeError: not an object, a required field missing, or a value of the wrong type.
    """
    if not isinstance(obj, dict):
        raise RowDecodeError(f"{row_type.__name__} row must be a JSON object")
    cls: Any = row_type
    if cls not in _resolved:
        attrs.resolve_types(cls)
        _resolved.add(cls)
    kwargs: dict[str, Any] = {}
    for field in attrs.fields(cls):
        if field.name not in obj:
            if field.default is attrs.NOTHING:
                raise RowDecodeError(f"{row_type.__name__} row lacks {field.name!r}")
            continue
        kwargs[field.name] = _coerce(obj[field.name], field.type, f"{row_type.__name__}.{field.name}")
    try:
        return row_type(**kwargs)
    except (TypeError, ValueError) as e:
        raise RowDecodeError(f"{row_type.__name__} row: {e}") from None


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    if annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        for option in typing.get_args(annotation):
            try:
                return _coerce(value, option, where)
            except RowDecodeError:
                continue
        raise RowDecodeError(f"{where}: {value!r:.60} does not match {annotation}")
    if annotation is type(None):
        if value is None:
            return None
    elif annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif origin in (tuple, list) or annotation in (tuple, list):
        if isinstance(value, list):
            args = typing.get_args(annotation)
            item_type = args[0] if args else Any
            items = [_coerce(v, item_type, where) for v in value]
            return tuple(items) if (origin or annotation) is tuple else items
    elif origin is dict or annotation is dict:
        if isinstance(value, dict):
            return value
    else:
        raise RowDecodeError(f"{where}: unsupported row field type {annotation!r}")
    raise RowDecodeError(f"{where}: {value!r:.60} is not {getattr(annotation, '__name__', annotation)}")
