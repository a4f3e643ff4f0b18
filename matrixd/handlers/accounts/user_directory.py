"""The user directory: ``POST /user_directory/search``.

Searchable profiles are kept in ``user_directory``: local users from their
global profile (on registration and every change), remote users from the
member event of their latest join that the directory saw.  Public rooms (join
rule ``public`` or history ``world_readable``) are tracked from the current
state deltas.  Both are fed by reading ``current_state_delta_stream`` from the
directory's saved position: shortly after state events are persisted, and
always before answering a search, so results never lag the rooms.

Who may be found is decided in SQL at search time: users sharing a joined room
with the searcher and users joined to public rooms (plus every local user with
``user_directory.search_all_users``).
"""

from __future__ import annotations

import logging
from typing import Optional

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall

from matrixd.config.registration import UserDirectoryConfig
from matrixd.events.event import Event
from matrixd.storage.accounts import UserStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.profiles import ProfileStore
from matrixd.storage.streams import StreamIdGenerator
from matrixd.storage.user_directory import DirectoryEntry, UserDirectoryStore
from matrixd.types import JsonDict, Requester, get_domain_from_id
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

MAX_LIMIT = 100
MAX_SEARCH_WORDS = 10
MAX_SEARCH_TERM_LEN = 1000
_VISIBILITY_TYPES = ("m.room.join_rules", "m.room.history_visibility")
#: Delay between a state event being persisted and the directory catching up.
CATCH_UP_DELAY = 2.0


class UserDirectoryHandler:
    def __init__(
        self,
        *,
        clock: Clock,
        server_name: str,
        config: UserDirectoryConfig,
        store: UserDirectoryStore,
        current_state: CurrentStateStore,
        profiles: ProfileStore,
        users: UserStore,
        event_stream_ids: StreamIdGenerator,
    ) -> None:
        self._clock = clock
        self._server_name = server_name
        self._config = config
        self._store = store
        self._current = current_state
        self._profiles = profiles
        self._users = users
        self._stream_ids = event_stream_ids
        self._lock = defer.DeferredLock()
        self._scheduled: Optional[IDelayedCall] = None

    # -- keeping up -----------------------------------------------------------------

    async def on_local_profile_changed(self, user_id: str, displayname: Optional[str],
                                       avatar_url: Optional[str]) -> None:
        await self._store.apply_changes(
            entries=[DirectoryEntry(user_id, displayname, avatar_url, True)], public_rooms={}
        )

    async def on_user_deactivated(self, user_id: str) -> None:
        await self._store.remove_user(user_id)

    def on_event_persisted(self, event: Event) -> None:
        """Persisted-event callback: catch up soon after state changes."""
        if not event.is_state() or self._scheduled is not None:
            return

        def run() -> None:
            self._scheduled = None
            d = defer.ensureDeferred(self.catch_up())
            d.addErrback(lambda f: logger.error("user directory catch-up failed: %s", f.getTraceback()))

        self._scheduled = self._clock.call_later(CATCH_UP_DELAY, run)

    async def catch_up(self) -> None:
        """Apply every current-state change up to the events stream's committed position."""
        async with self._lock:
            pos = await self._store.get_stream_pos()
            upto = self._stream_ids.get_current_token()
            while pos < upto:
                rows = await self._current.get_current_state_deltas(pos, upto, limit=500)
                if not rows:
                    await self._store.apply_changes(entries=[], public_rooms={}, new_pos=upto)
                    break
                rooms = {r.room_id for r in rows if r.type in _VISIBILITY_TYPES and r.state_key == ""}
                joins = [r.event_id for r in rows if r.type == "m.room.member" and r.event_id is not None]
                entries = await self._entries_for_joins(joins)
                public = {room_id: await self._is_public(room_id) for room_id in sorted(rooms)}
                pos = rows[-1].stream_id
                await self._store.apply_changes(entries=entries, public_rooms=public, new_pos=pos)

    async def _entries_for_joins(self, event_ids: list[str]) -> list[DirectoryEntry]:
        entries: dict[str, DirectoryEntry] = {}
        for user_id, displayname, avatar_url in (await self._store.get_join_event_profiles(event_ids)).values():
            if get_domain_from_id(user_id) != self._server_name:
                entries[user_id] = DirectoryEntry(user_id, displayname, avatar_url, False)
                continue
            user = await self._users.get_user(user_id)
            if user is None or user.deactivated:
                continue
            profile = await self._profiles.get_profile(user_id)
            dn, av = profile if profile is not None else (None, None)
            entries[user_id] = DirectoryEntry(user_id, dn, av, True)
        return list(entries.values())

    async def _is_public(self, room_id: str) -> bool:
        join_rules = await self._current.get_current_state_event(room_id, "m.room.join_rules", "")
        if join_rules is not None and join_rules.content.get("join_rule") == "public":
            return True
        visibility = await self._current.get_current_state_event(room_id, "m.room.history_visibility", "")
        return visibility is not None and visibility.content.get("history_visibility") == "world_readable"

    # -- searching ------------------------------------------------------------------

    async def search(self, requester: Requester, search_term: str, limit: int) -> JsonDict:
        """Up to ``limit`` users visible to the requester matching every word of ``search_term``."""
        limit = max(0, min(limit, MAX_LIMIT))
        words = search_term[:MAX_SEARCH_TERM_LEN].lower().split()[:MAX_SEARCH_WORDS]
        if not words or not self._config.enabled:
            return {"results": [], "limited": False}
        await self.catch_up()
        found = await self._store.search(requester.user_id, words, limit + 1, self._config.search_all_users)
        results = []
        for e in found[:limit]:
            item: JsonDict = {"user_id": e.user_id}
            if e.display_name is not None:
                item["display_name"] = e.display_name
            if e.avatar_url is not None:
                item["avatar_url"] = e.avatar_url
            results.append(item)
        return {"results": results, "limited": len(found) > limit}
