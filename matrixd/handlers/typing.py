"""Typing notifications: an in-memory stream on the master.

Who is typing where is kept only in memory (it is stale within seconds, so
nothing is lost by a restart), but the stream's positions must never go
backwards across restarts, or a client holding a token from before the
restart would miss changes: positions start from the wall clock in
milliseconds at start-up and count up by one per change.

Each change of a room's typing list takes a new position; ``/sync`` sends the
full list of a room whose position is after the client's token (clients
replace their list, so an empty list is how "stopped typing" arrives).
"""

from __future__ import annotations

from typing import Callable, Collection, Optional

import attrs
from twisted.internet.interfaces import IDelayedCall

from matrixd.api.errors import AuthError
from matrixd.storage.current_state import CurrentStateStore
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName
from matrixd.types import Requester
from matrixd.util.clock import Clock

#: Longest a single typing request keeps a user typing; clients re-send every 20-30 s.
MAX_TYPING_TIMEOUT_MS = 30_000
DEFAULT_TYPING_TIMEOUT_MS = 30_000


@attrs.frozen(slots=True)
class TypingStreamRow:
    """A room's typing list as of a stream position (replication catch-up)."""

    position: int
    room_id: str
    user_ids: tuple[str, ...]


class TypingHandler:
    """Holds every room's typing users and the typing stream position."""

    def __init__(
        self, *, clock: Clock, notifier: Notifier, current_state: CurrentStateStore,
        initial_position: Optional[int] = None,
    ) -> None:
        self._clock = clock
        self._notifier = notifier
        self._current_state = current_state
        # A replica (on a worker) starts at 0 and adopts the master's positions from replication.
        self._position = clock.time_msec() if initial_position is None else initial_position
        self._publish: Optional[Callable[[], None]] = None
        self._typing: dict[str, dict[str, int]] = {}  # room -> user -> expiry (ms)
        self._room_position: dict[str, int] = {}
        self._timers: dict[tuple[str, str], IDelayedCall] = {}
        notifier.set_position(StreamName.TYPING, self._position)

    def get_current_token(self) -> int:
        return self._position

    def set_publisher(self, notify: Callable[[], None]) -> None:
        """Announce changes through the replication publisher (its notify for this stream)."""
        self._publish = notify

    async def set_typing(
        self, requester: Requester, room_id: str, user_id: str, typing: bool, timeout_ms: Optional[int]
    ) -> None:
        """``PUT /rooms/{roomId}/typing/{userId}``: only for yourself, only in rooms you are joined to."""
        if requester.user_id != user_id:
            raise AuthError(403, "Cannot set another user's typing state")
        membership = await self._current_state.get_membership(room_id, user_id)
        if membership is None or membership.membership != "join":
            raise AuthError(403, "User is not in the room")
        if requester.shadow_banned:
            return  # shadow-banned: accepted, shown to nobody
        if typing:
            timeout = DEFAULT_TYPING_TIMEOUT_MS if timeout_ms is None else timeout_ms
            self.start_typing(room_id, user_id, max(0, min(timeout, MAX_TYPING_TIMEOUT_MS)))
        else:
            self.stop_typing(room_id, user_id)

    def start_typing(self, room_id: str, user_id: str, timeout_ms: int) -> None:
        """Mark the user typing for ``timeout_ms``; renewing an existing entry moves no stream."""
        expiry = self._clock.time_msec() + timeout_ms
        users = self._typing.setdefault(room_id, {})
        newly = user_id not in users
        users[user_id] = expiry
        self._set_timer(room_id, user_id, timeout_ms / 1000.0)
        if newly:
            self._changed(room_id)

    def stop_typing(self, room_id: str, user_id: str) -> None:
        timer = self._timers.pop((room_id, user_id), None)
        if timer is not None and timer.active():
            timer.cancel()
        users = self._typing.get(room_id)
        if users is None or user_id not in users:
            return
        del users[user_id]
        if not users:
            del self._typing[room_id]
        self._changed(room_id)

    def _set_timer(self, room_id: str, user_id: str, delay: float) -> None:
        old = self._timers.pop((room_id, user_id), None)
        if old is not None and old.active():
            old.cancel()
        self._timers[(room_id, user_id)] = self._clock.call_later(delay, self._expire, room_id, user_id)

    def _expire(self, room_id: str, user_id: str) -> None:
        self._timers.pop((room_id, user_id), None)
        expiry = self._typing.get(room_id, {}).get(user_id)
        if expiry is not None and expiry <= self._clock.time_msec():
            self.stop_typing(room_id, user_id)

    def _changed(self, room_id: str) -> None:
        self._position += 1
        self._room_position[room_id] = self._position
        if self._publish is not None:
            self._publish()
        else:
            self._notifier.on_new_position(StreamName.TYPING, self._position, [room_id])

    # -- a replica's copy (on workers) --------------------------------------------

    def apply_replicated(self, position: int, room_id: str, user_ids: Collection[str]) -> None:
        """Take the master's list for a room as of ``position`` (no timers: expiry is the master's job)."""
        if user_ids:
            self._typing[room_id] = {user_id: 0 for user_id in user_ids}
        else:
            self._typing.pop(room_id, None)
        self._room_position[room_id] = position
        self._position = max(self._position, position)

    def reset_replicated(self) -> None:
        """Forget every list (the master restarted: its typing state and positions are new)."""
        self._typing.clear()
        self._room_position.clear()

    # -- reading ----------------------------------------------------------------

    def get_typing_users(self, room_id: str) -> list[str]:
        return sorted(self._typing.get(room_id, ()))

    def get_changed_rooms(self, room_ids: Collection[str], since: Optional[int]) -> dict[str, list[str]]:
        """Typing lists of the rooms that changed after ``since`` (None: the non-empty ones)."""
        out: dict[str, list[str]] = {}
        for room_id in room_ids:
            if since is None:
                if self._typing.get(room_id):
                    out[room_id] = self.get_typing_users(room_id)
            elif self._room_position.get(room_id, 0) > since:
                out[room_id] = self.get_typing_users(room_id)
        return out

    def get_updates(self, from_pos: int, to_pos: int, limit: int) -> list[TypingStreamRow]:
        """Rooms whose list changed in ``(from_pos, to_pos]`` with their current list, oldest change first."""
        changed = sorted(
            (pos, room_id) for room_id, pos in self._room_position.items() if from_pos < pos <= to_pos
        )
        return [
            TypingStreamRow(pos, room_id, tuple(self.get_typing_users(room_id))) for pos, room_id in changed[:limit]
        ]
