"""Presence: who is online, idle or offline, tracked on the master.

A local user is ``online`` while a client syncs (unless it asks otherwise
with ``set_presence``) or after setting it; ``unavailable`` after
:data:`IDLE_TIMEOUT_MS` without a pro-active event (sending an event,
setting presence online); ``offline`` :data:`SYNC_TIMEOUT_MS` after the last
client stopped syncing.  Timeouts are checked every :data:`CHECK_INTERVAL_S`
on the injected clock, over the users held in memory (the ones not offline,
reloaded at start-up so their timeouts survive restarts).

``currently_active`` is true while the last pro-active event is less than
:data:`ACTIVE_GRANULARITY_MS` old; within that window activity updates the
in-memory time only, so a chatty user does not flood the presence stream.

Every stored change is announced on the presence stream with the user and
the user's rooms as wake-up keys, after the write is committed.
"""

from __future__ import annotations

import logging
from typing import AsyncIterator, Callable, Collection, Iterable, Optional

import attrs
from contextlib import asynccontextmanager
from twisted.internet import defer, task

from matrixd.api.errors import AuthError, InvalidParamError
from matrixd.handlers.sync.announcer import StreamAnnouncer
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.presence import PresenceStore, UserPresenceState
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName
from matrixd.types import JsonDict, Requester
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

ONLINE = "online"
UNAVAILABLE = "unavailable"
OFFLINE = "offline"
PRESENCE_STATES = frozenset({ONLINE, UNAVAILABLE, OFFLINE})

IDLE_TIMEOUT_MS = 5 * 60 * 1000
SYNC_TIMEOUT_MS = 30 * 1000
ACTIVE_GRANULARITY_MS = 60 * 1000
CHECK_INTERVAL_S = 5.0
MAX_STATUS_MSG_LENGTH = 1024


def format_presence(state: UserPresenceState, now_ms: int) -> JsonDict:
    """The content of an ``m.presence`` event (and of ``GET /presence/{userId}/status``)."""
    content: JsonDict = {"presence": state.state}
    if state.last_active_ts:
        content["last_active_ago"] = max(0, now_ms - state.last_active_ts)
    if state.state == ONLINE:
        content["currently_active"] = state.currently_active
    if state.status_msg is not None:
        content["status_msg"] = state.status_msg
    return content


class PresenceHandler:
    def __init__(
        self,
        *,
        clock: Clock,
        store: PresenceStore,
        notifier: Notifier,
        current_state: CurrentStateStore,
        server_name: str,
        enabled: bool = True,
    ) -> None:
        self._clock = clock
        self._store = store
        self._notifier = notifier
        self._announcer = StreamAnnouncer(notifier, StreamName.PRESENCE, store.get_current_token)
        self._current_state = current_state
        self._server_name = server_name
        self.enabled = enabled
        self._states: dict[str, UserPresenceState] = {}
        self._syncing: dict[str, int] = {}
        self._loop: Optional[task.LoopingCall] = None
        self._remote_syncing: Callable[[], Collection[str]] = frozenset

    def set_publisher(self, notify: Callable[[], None]) -> None:
        """Announce stored changes through the replication publisher (its notify for this stream)."""
        self._announcer.publish_through(notify)

    def set_remote_syncing(self, syncing_users: Callable[[], Collection[str]]) -> None:
        """Users syncing on workers (reported over replication) count as connected too."""
        self._remote_syncing = syncing_users

    def is_mine(self, user_id: str) -> bool:
        return user_id.endswith(":" + self._server_name)

    async def start(self) -> None:
        """Reload the users not offline and start the timeout checks."""
        self._notifier.set_position(StreamName.PRESENCE, self._store.get_current_token())
        if not self.enabled:
            return
        for state in await self._store.get_active_states():
            self._states[state.user_id] = state
        self._loop = self._clock.looping_call(self._run_check, CHECK_INTERVAL_S)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    # -- reading ----------------------------------------------------------------

    async def get_states(self, user_ids: Collection[str]) -> dict[str, UserPresenceState]:
        """Current states (in-memory first, then stored); users never seen are offline."""
        out: dict[str, UserPresenceState] = {}
        missing = []
        for user_id in user_ids:
            state = self._states.get(user_id)
            if state is not None:
                out[user_id] = state
            else:
                missing.append(user_id)
        if missing:
            stored = await self._store.get_presence(missing)
            for user_id in missing:
                out[user_id] = stored.get(user_id) or UserPresenceState.default(user_id)
        return out

    async def get_state(self, user_id: str) -> UserPresenceState:
        return (await self.get_states([user_id]))[user_id]

    async def get_presence_for_client(self, requester: Requester, user_id: str) -> JsonDict:
        """``GET /presence/{userId}/status``: your own, or that of someone you share a room with."""
        if user_id != requester.user_id:
            mine = await self._current_state.get_rooms_for_user(requester.user_id)
            theirs = await self._current_state.get_rooms_for_user(user_id)
            if not mine & theirs:
                raise AuthError(403, "You are not allowed to see their presence")
        if not self.enabled:
            return {"presence": OFFLINE}
        return format_presence(await self.get_state(user_id), self._clock.time_msec())

    # -- changes ----------------------------------------------------------------

    async def set_presence(
        self, requester: Requester, user_id: str, state: str, status_msg: Optional[str], *, has_status_msg: bool
    ) -> None:
        """``PUT /presence/{userId}/status``; a missing ``status_msg`` clears it."""
        if requester.user_id != user_id:
            raise AuthError(403, "Cannot set presence state for other users")
        if state not in PRESENCE_STATES:
            raise InvalidParamError(f"presence must be one of online, unavailable, offline, not {state!r}")
        if status_msg is not None and len(status_msg) > MAX_STATUS_MSG_LENGTH:
            raise InvalidParamError(f"status_msg is longer than {MAX_STATUS_MSG_LENGTH} characters")
        if not self.enabled:
            return
        prev = await self.get_state(user_id)
        now = self._clock.time_msec()
        new = attrs.evolve(prev, state=state, last_user_sync_ts=now)
        new = attrs.evolve(new, status_msg=status_msg if has_status_msg else None)
        if state == ONLINE:
            new = attrs.evolve(new, last_active_ts=now, currently_active=True)
        else:
            new = attrs.evolve(new, currently_active=False)
        await self._persist([new])

    async def bump_activity(self, user_id: str) -> None:
        """A pro-active event: the user is online and active now."""
        if not self.enabled or not self.is_mine(user_id):
            return
        prev = await self.get_state(user_id)
        now = self._clock.time_msec()
        if prev.state == ONLINE and prev.currently_active:
            self._states[user_id] = attrs.evolve(prev, last_active_ts=now)
            return
        await self._persist([
            attrs.evolve(prev, state=ONLINE, last_active_ts=now, currently_active=True,
                         last_user_sync_ts=max(prev.last_user_sync_ts, now))
        ])

    def on_event_persisted(self, sender: str) -> None:
        """Persisted-event hook: sending an event is activity (errors are logged, not raised)."""
        if not self.enabled or not self.is_mine(sender):
            return
        d = defer.ensureDeferred(self.bump_activity(sender))
        d.addErrback(lambda f: logger.error("presence bump for %s failed: %s", sender, f.getTraceback()))

    @asynccontextmanager
    async def user_syncing(self, user_id: str, set_presence: str) -> AsyncIterator[None]:
        """Wraps a ``/sync``: the user counts as connected while it runs (unless ``offline``)."""
        if not self.enabled or set_presence == OFFLINE:
            yield
            return
        prev = await self.get_state(user_id)
        now = self._clock.time_msec()
        if set_presence == UNAVAILABLE and prev.state != UNAVAILABLE:
            await self._persist([attrs.evolve(prev, state=UNAVAILABLE, currently_active=False, last_user_sync_ts=now)])
        elif set_presence == ONLINE and prev.state == OFFLINE:
            await self._persist([
                attrs.evolve(prev, state=ONLINE, last_active_ts=now, currently_active=True, last_user_sync_ts=now)
            ])
        self._syncing[user_id] = self._syncing.get(user_id, 0) + 1
        try:
            yield
        finally:
            left = self._syncing.get(user_id, 1) - 1
            if left > 0:
                self._syncing[user_id] = left
            else:
                self._syncing.pop(user_id, None)
            current = self._states.get(user_id)
            if current is not None:
                self._states[user_id] = attrs.evolve(current, last_user_sync_ts=self._clock.time_msec())

    # -- timeouts ---------------------------------------------------------------

    def _run_check(self) -> "defer.Deferred[None]":
        d = defer.ensureDeferred(self.check_timeouts())
        d.addErrback(lambda f: logger.error("presence timeout check failed: %s", f.getTraceback()))
        return d

    async def check_timeouts(self) -> None:
        """Move users to unavailable / offline / not currently active as their timers run out."""
        now = self._clock.time_msec()
        changed = []
        remote = self._remote_syncing()
        for user_id, state in list(self._states.items()):
            if state.state == OFFLINE or not self.is_mine(user_id):
                continue  # remote users' servers tell us when their state changes
            if user_id in remote:
                # Connected through a worker: the sync timeout runs from when that ends.
                state = self._states[user_id] = attrs.evolve(state, last_user_sync_ts=now)
            new = state
            if user_id not in self._syncing and now - state.last_user_sync_ts > SYNC_TIMEOUT_MS:
                new = attrs.evolve(state, state=OFFLINE, currently_active=False)
            elif state.state == ONLINE and now - state.last_active_ts > IDLE_TIMEOUT_MS:
                new = attrs.evolve(state, state=UNAVAILABLE, currently_active=False)
            elif state.currently_active and now - state.last_active_ts > ACTIVE_GRANULARITY_MS:
                new = attrs.evolve(state, currently_active=False)
            if new != state:
                changed.append(new)
        await self._persist(changed)

    async def set_remote_presence(self, user_id: str, content: JsonDict) -> None:
        """A remote user's presence from its own server (federation ``m.presence``; already checked)."""
        if self.is_mine(user_id) or not self.enabled or content.get("presence") not in PRESENCE_STATES:
            return
        now = self._clock.time_msec()
        ago = content.get("last_active_ago")
        status = content.get("status_msg")
        new = UserPresenceState(
            user_id, str(content["presence"]), status if isinstance(status, str) else None,
            now - ago if isinstance(ago, int) and not isinstance(ago, bool) and ago >= 0 else 0,
            now, content.get("currently_active") is True,
        )
        await self._persist([new])

    async def _persist(self, states: Iterable[UserPresenceState]) -> None:
        batch = list(states)
        if not batch:
            return
        try:
            stored = await self._store.update_presence(batch)
        except BaseException:
            self._announcer.flush()
            raise
        keys: set[str] = set()
        for state in stored:
            if state.state == OFFLINE:
                self._states.pop(state.user_id, None)
            else:
                self._states[state.user_id] = state
            keys.add(state.user_id)
            keys.update(await self._current_state.get_rooms_for_user(state.user_id))
        self._announcer.announce(max(s.stream_id for s in stored), keys)
