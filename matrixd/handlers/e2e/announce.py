"""Announcing a DB-backed stream's new position to the Notifier without losing wake-ups.

A writer finishes its id and asks to wake some keys.  If an earlier id is still
unfinished, the generator's current token does not yet cover this write, and a
waiter woken now would find nothing new and sleep again.  So the keys are held
until the token passes the write's id and released with the announcement that
makes it visible.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from matrixd.storage.streams import StreamIdGenerator
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName


class StreamAnnouncer:
    def __init__(self, stream: StreamName, ids: StreamIdGenerator, notifier: Notifier) -> None:
        self._stream = stream
        self._ids = ids
        self._notifier = notifier
        self._pending: dict[int, set[str]] = {}
        self._publish: Optional[Callable[[], None]] = None
        notifier.set_position(stream, ids.get_current_token())

    def publish_through(self, notify: Callable[[], None]) -> None:
        """From now on announce by calling ``notify``: the replication publisher pages the committed
        rows and wakes their keys through the dispatcher (the path workers run too)."""
        self._publish = notify

    def current_position(self) -> int:
        return self._ids.get_current_token()

    def announce(self, stream_id: int, keys: Iterable[str]) -> None:
        """Call after the write of ``stream_id`` committed and its id is finished."""
        if self._publish is not None:
            self._publish()
            return
        self._pending.setdefault(stream_id, set()).update(keys)
        token = self._ids.get_current_token()
        ready: set[str] = set()
        for sid in [s for s in self._pending if s <= token]:
            ready |= self._pending.pop(sid)
        self._notifier.on_new_position(self._stream, token, ready)
