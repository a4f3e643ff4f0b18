"""Delivering notifications to users' push gateways, in order per pusher, retrying with backoff.

Each pusher has its own queue: a notification is posted, and on a transport
error or a non-2xx answer retried after 1, 2, 4, ... seconds (capped), up to
:data:`MAX_ATTEMPTS` tries, after which it is dropped and the next one goes.
A pushkey the gateway lists in ``rejected`` is deleted at once.  The badge
count (``counts.unread``) is read when the notification is sent.
"""

from __future__ import annotations

import collections
import logging
from typing import Awaitable, Callable, Optional

import attrs
from twisted.internet import defer

from matrixd.events.event import Event
from matrixd.push.actions import PushOutcome
from matrixd.push.evaluator import Actions
from matrixd.push.gateway import PushGatewayClient, build_notification
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.pushers import Pusher, PusherStore
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 60.0 * 10
MAX_ATTEMPTS = 10


@attrs.frozen(slots=True)
class _Pending:
    event: Event
    actions: Actions


class _PusherQueue:
    def __init__(self, pusher: Pusher) -> None:
        self.pusher = pusher
        self.pending: collections.deque[_Pending] = collections.deque()
        self.running = False
        self.stopped = False


class PusherPool:
    def __init__(
        self,
        *,
        clock: Clock,
        store: PusherStore,
        current_state: CurrentStateStore,
        client: PushGatewayClient,
        badge_count: Callable[[str], Awaitable[int]],
    ) -> None:
        self._clock = clock
        self._store = store
        self._current_state = current_state
        self._client = client
        self._badge_count = badge_count
        self._queues: dict[str, dict[int, _PusherQueue]] = {}

    def set_client(self, client: PushGatewayClient) -> None:
        """Use another gateway client (tests: an in-memory gateway)."""
        self._client = client

    async def start(self) -> None:
        """Load every pusher (the master's pool delivers for all users)."""
        self._queues = {}
        for pusher in await self._store.get_all_pushers():
            self._queues.setdefault(pusher.user_id, {})[pusher.id] = _PusherQueue(pusher)

    def stop(self) -> None:
        for queues in self._queues.values():
            for q in queues.values():
                q.stopped = True
        self._queues = {}

    async def reload_user(self, user_id: str) -> None:
        """The user's pushers changed: pick up the new set (queues of kept pushers survive)."""
        old = self._queues.pop(user_id, {})
        fresh: dict[int, _PusherQueue] = {}
        for pusher in await self._store.get_pushers(user_id):
            q = old.pop(pusher.id, None)
            if q is None:
                q = _PusherQueue(pusher)
            else:
                q.pusher = pusher
            fresh[pusher.id] = q
        for q in old.values():
            q.stopped = True
        if fresh:
            self._queues[user_id] = fresh

    async def on_push_actions(self, event: Event, outcome: PushOutcome) -> None:
        """Actions listener of :class:`matrixd.push.actions.PushActionGenerator`: queue notifying events."""
        for user_id in [u for u in self._queues if outcome.is_recipient(u)]:
            actions = outcome.actions_for(user_id)
            if not actions.notify:
                continue
            for q in self._queues.get(user_id, {}).values():
                if q.pusher.kind != "http":
                    continue
                q.pending.append(_Pending(event, actions))
                if not q.running:
                    q.running = True
                    defer.ensureDeferred(self._drain(q))

    async def _drain(self, q: _PusherQueue) -> None:
        try:
            while q.pending and not q.stopped:
                item = q.pending[0]
                await self._deliver(q, item)
                if q.pending and q.pending[0] is item:
                    q.pending.popleft()
        except Exception:
            logger.exception("pusher %s of %s failed", q.pusher.id, q.pusher.user_id)
        finally:
            q.running = False

    async def _deliver(self, q: _PusherQueue, item: _Pending) -> None:
        backoff = INITIAL_BACKOFF
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if q.stopped:
                return
            pusher = q.pusher
            try:
                body = await self._body(pusher, item)
                code, answer = await self._client.post_json(pusher.data["url"], body)
            except Exception as e:
                logger.info("push to %s for %s failed (attempt %d): %s", pusher.app_id, pusher.user_id, attempt, e)
                ok = False
            else:
                ok = 200 <= code < 300
                if ok:
                    rejected = answer.get("rejected") if isinstance(answer, dict) else None
                    if isinstance(rejected, list) and pusher.pushkey in rejected:
                        logger.info("gateway rejected pushkey of %s (%s): removing", pusher.user_id, pusher.app_id)
                        await self._store.delete_pusher(pusher.user_id, pusher.app_id, pusher.pushkey)
                        await self.reload_user(pusher.user_id)
                        return
                    so = item.event.internal_metadata.stream_ordering or 0
                    await self._store.update_progress(pusher.id, so, None)
                    return
                logger.info("gateway %s answered %d for %s (attempt %d)", pusher.app_id, code, pusher.user_id,
                            attempt)
            if attempt == MAX_ATTEMPTS:
                break
            if attempt == 1:
                await self._store.update_progress(
                    pusher.id, pusher.last_stream_ordering, self._clock.time_msec()
                )
            await self._clock.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
        logger.warning("dropping notification %s for %s after %d attempts", item.event.event_id,
                       q.pusher.user_id, MAX_ATTEMPTS)

    async def _body(self, pusher: Pusher, item: _Pending) -> dict[str, object]:
        event = item.event
        unread = await self._badge_count(pusher.user_id)
        sender_name: Optional[str] = None
        room_name: Optional[str] = None
        if pusher.data.get("format") != "event_id_only":
            member = await self._current_state.get_current_state_event(event.room_id, "m.room.member", event.sender)
            if member is not None and isinstance(member.content.get("displayname"), str):
                sender_name = member.content["displayname"]
            name_ev = await self._current_state.get_current_state_event(event.room_id, "m.room.name", "")
            if name_ev is not None and isinstance(name_ev.content.get("name"), str):
                room_name = name_ev.content["name"]
        return build_notification(pusher, event, item.actions, unread, sender_display_name=sender_name,
                                  room_name=room_name)
