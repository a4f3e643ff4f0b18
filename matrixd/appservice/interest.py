"""Which application services an event (or ephemeral event) concerns.

Spec (registration, namespaces, ``sender_localpart``): an event interests a
service if its sender or (for membership) its target user is in the service's
user namespace or is the service's sender, its room id is in the room
namespace, one of the room's aliases is in the alias namespace, or one of the
room's joined members is the sender or in the user namespace.

The last two are per-room facts that would otherwise cost a query per event
per service.  They are cached per (room, service) and dropped when the room's
membership or canonical alias changes or its directory aliases change (the
alias handler says so); cached answers also expire after
:data:`ROOM_INTEREST_TTL` seconds (aliases moved by room upgrades).
"""

from __future__ import annotations

from typing import Optional

from matrixd.appservice.registration import AppServiceRegistration
from matrixd.events.event import Event
from matrixd.storage.aliases import AliasStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.util.clock import Clock

ROOM_INTEREST_TTL = 60.0
MAX_CACHED_ROOMS = 100_000
_INVALIDATING_TYPES = frozenset({"m.room.member", "m.room.canonical_alias"})


class InterestChecker:
    def __init__(self, *, clock: Clock, server_name: str, current_state: CurrentStateStore,
                 aliases: AliasStore) -> None:
        self._clock = clock
        self._server_name = server_name
        self._current = current_state
        self._aliases = aliases
        # room_id -> service id -> (interested, computed at)
        self._rooms: dict[str, dict[str, tuple[bool, float]]] = {}

    def on_event_persisted(self, event: Event) -> None:
        """Forget cached room interest when membership or the canonical alias changed."""
        if event.type in _INVALIDATING_TYPES:
            self._rooms.pop(event.room_id, None)

    def invalidate_room(self, room_id: str) -> None:
        self._rooms.pop(room_id, None)

    def _user(self, service: AppServiceRegistration, user_id: str) -> bool:
        """The user namespace, or the service's sender (spec: ``sender_localpart``)."""
        return service.can_act_as(user_id, self._server_name)

    async def is_interested_in_event(self, service: AppServiceRegistration, event: Event) -> bool:
        if self._user(service, event.sender):
            return True
        if event.type == "m.room.member" and event.state_key is not None and self._user(service, event.state_key):
            return True
        return await self.is_interested_in_room(service, event.room_id)

    async def is_interested_in_room(self, service: AppServiceRegistration, room_id: str) -> bool:
        """Room id, room aliases (canonical and directory) or a joined member in the service's namespaces."""
        if service.is_interested_in_room_id(room_id):
            return True
        cached = self._rooms.get(room_id, {}).get(service.id)
        now = self._clock.time()
        if cached is not None and now - cached[1] < ROOM_INTEREST_TTL:
            return cached[0]
        interested = await self._compute_room_interest(service, room_id)
        if len(self._rooms) >= MAX_CACHED_ROOMS:
            self._rooms.clear()  # crude bound: recomputing is cheap compared with unbounded growth
        self._rooms.setdefault(room_id, {})[service.id] = (interested, now)
        return interested

    async def _compute_room_interest(self, service: AppServiceRegistration, room_id: str) -> bool:
        if service.aliases:
            aliases = list(await self._aliases.get_aliases_for_room(room_id))
            canonical = await self._current.get_current_state_event(room_id, "m.room.canonical_alias", "")
            if canonical is not None:
                alias: Optional[object] = canonical.content.get("alias")
                if isinstance(alias, str):
                    aliases.append(alias)
                alt = canonical.content.get("alt_aliases")
                if isinstance(alt, list):
                    aliases.extend(a for a in alt if isinstance(a, str))
            if any(service.is_interested_in_alias(a) for a in aliases):
                return True
        return any(self._user(service, u) for u in await self._current.get_users_in_room(room_id))
