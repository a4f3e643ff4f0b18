"""Announcing a DB-backed stream's new position with the wake-up keys of every row it makes visible.

Writes finish out of order: when the row with id 6 commits while id 5 is
still running, the announceable position stays at 4, and the row's keys
must not be lost; they are announced by whichever write moves the position
past 6 (here: the one finishing id 5), together with its own keys.  A write
that fails (its id finishes without a row) calls :meth:`StreamAnnouncer.flush`
so what was held behind it is released.

On a master with replication, :meth:`StreamAnnouncer.publish_through` hands
announcements to the replication publisher instead: it pages the committed
rows up to the current token and runs them through the dispatcher (which
wakes the rows' keys), the one path workers run too.

Every DB-backed stream with one writer in this process uses it: account data,
receipts, presence, push rules, and the E2E streams (device lists, to-device).
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from matrixd.storage.streams import StreamIdGenerator
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName


class StreamAnnouncer:
    """Called by the single writer of a stream after each committed write."""

    def __init__(self, notifier: Notifier, stream: StreamName, current_token: Callable[[], int]) -> None:
        self._notifier = notifier
        self._stream = stream
        self._current_token = current_token
        self._pending: list[tuple[int, tuple[str, ...]]] = []
        self._publish: Optional[Callable[[], None]] = None

    @classmethod
    def for_id_generator(cls, notifier: Notifier, stream: StreamName, ids: StreamIdGenerator) -> "StreamAnnouncer":
        """An announcer over ``ids``' current token, telling ``notifier`` the stream's position now."""
        notifier.set_position(stream, ids.get_current_token())
        return cls(notifier, stream, ids.get_current_token)

    def current_position(self) -> int:
        return self._current_token()

    def publish_through(self, notify: Callable[[], None]) -> None:
        """From now on, announce by calling ``notify`` (the replication publisher's, for this stream)."""
        self._publish = notify

    def announce(self, stream_id: int, keys: Iterable[str]) -> None:
        """Row ``stream_id`` (with wake-up ``keys``) is committed: advance and wake what is now visible."""
        if self._publish is not None:
            self._publish()
            return
        self._pending.append((stream_id, tuple(keys)))
        self.flush()

    def flush(self) -> None:
        """Advance to the current token and wake the keys of every held row it now covers."""
        token = self._current_token()
        ready: list[str] = []
        waiting: list[tuple[int, tuple[str, ...]]] = []
        for entry in self._pending:
            if entry[0] <= token:
                ready.extend(entry[1])
            else:
                waiting.append(entry)
        self._pending = waiting
        self._notifier.on_new_position(self._stream, token, ready)
