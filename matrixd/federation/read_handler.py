"""Answers to other servers' read requests: events, room state, auth chains, history, queries.

Who may read what:

* ``/event``: the requesting server must be in the event's room, or the room
  world-readable; the event is then filtered by ``ServerVisibility`` (given
  redacted if the server may not see its content).
* ``/state``, ``/state_ids``, ``/event_auth``, ``/backfill``,
  ``/get_missing_events``: the server must be in the room (403
  ``M_FORBIDDEN``); events of ``/backfill`` and ``/get_missing_events`` are
  filtered like ``/event``. (The server ACL is applied by the servlets.)
* ``/query/profile``: local users only; 403 if
  ``allow_profile_lookup_over_federation`` is off.
* ``/query/directory``: local aliases only.

Event lists are returned as PDUs without ``unsigned`` (server-local data).
"""

from __future__ import annotations

import heapq
from typing import Any, Collection, Iterable, Optional, Sequence

from matrixd.api.errors import AuthError, Codes, InvalidParamError, MatrixError, NotFoundError
from matrixd.events.event import Event, JsonDict
from matrixd.federation.acl import ServerAclChecker
from matrixd.federation.visibility import ServerVisibility
from matrixd.http.responses import encode_json
from matrixd.storage.aliases import AliasStore
from matrixd.storage.events import EventStore
from matrixd.storage.partial_state import PartialStateStore
from matrixd.storage.profiles import ProfileStore
from matrixd.storage.rooms import RoomStore
from matrixd.storage.state import StateGroupStore
from matrixd.types import IdentifierError, RoomAlias, UserID
from matrixd.util.clock import Clock

#: Most events one /backfill or /get_missing_events answer holds.
MAX_EVENTS_PER_REQUEST = 100
PROFILE_FIELDS = ("displayname", "avatar_url")


def pdu_for_federation(event: Event) -> JsonDict:
    """The event as other servers get it: the PDU without ``unsigned``."""
    pdu = dict(event.get_pdu_json())
    pdu.pop("unsigned", None)
    return pdu


class FederationReadHandler:
    def __init__(
        self,
        *,
        clock: Clock,
        server_name: str,
        events: EventStore,
        state: StateGroupStore,
        rooms: RoomStore,
        aliases: AliasStore,
        profiles: ProfileStore,
        visibility: ServerVisibility,
        acl: ServerAclChecker,
        allow_profile_lookup: bool = True,
        partial_state: Optional[PartialStateStore] = None,
    ) -> None:
        self._partial = partial_state
        self._clock = clock
        self._server_name = server_name
        self._events = events
        self._state = state
        self._rooms = rooms
        self._aliases = aliases
        self._profiles = profiles
        self._visibility = visibility
        self._acl = acl
        self._allow_profile_lookup = allow_profile_lookup

    def transaction(self, pdus: Iterable[JsonDict]) -> JsonDict:
        """The ``Transaction`` envelope some answers use."""
        return {"origin": self._server_name, "origin_server_ts": self._clock.time_msec(), "pdus": list(pdus)}

    # -- access -------------------------------------------------------------------

    async def _require_host_in_room(self, origin: str, room_id: str) -> None:
        if await self._rooms.get_room(room_id) is None:
            raise NotFoundError(f"Unknown room {room_id}")
        if not await self._visibility.is_host_in_room(origin, room_id):
            raise AuthError(403, f"Server {origin} is not in room {room_id}", Codes.FORBIDDEN)

    async def _event_in_room(self, room_id: str, event_id: str) -> Event:
        event = await self._events.get_event(event_id)
        if event is None or event.room_id != room_id or event.internal_metadata.rejected_reason is not None:
            raise NotFoundError(f"Could not find event {event_id} in room {room_id}")
        return event

    # -- events -------------------------------------------------------------------

    async def get_event(self, origin: str, event_id: str) -> JsonDict:
        """A transaction holding the one PDU (the room's server ACL applies)."""
        event = await self._events.get_event(event_id)
        if event is None or event.internal_metadata.rejected_reason is not None:
            raise NotFoundError(f"Could not find event {event_id}")
        room_id = event.room_id
        await self._acl.check_server_allowed(origin, room_id)
        if not (await self._visibility.is_host_in_room(origin, room_id)
                or await self._visibility.is_room_world_readable(room_id)):
            raise AuthError(403, f"Server {origin} may not see events of room {room_id}", Codes.FORBIDDEN)
        shown = await self._visibility.filter_events_for_server(origin, [event])
        return self.transaction(pdu_for_federation(e) for e in shown)

    async def get_state_ids(self, origin: str, room_id: str, event_id: str) -> JsonDict:
        """``{pdu_ids, auth_chain_ids}``: the state before ``event_id`` and its auth chain."""
        state_ids = await self._state_before(origin, room_id, event_id)
        chain = await self._events.get_auth_chain_ids(state_ids)
        return {"pdu_ids": sorted(state_ids), "auth_chain_ids": sorted(chain)}

    async def get_state_body(self, origin: str, room_id: str, event_id: str) -> bytes:
        """``{pdus, auth_chain}`` (the state events before ``event_id`` and their auth chain) as JSON
        bytes, the stored text of each event relayed as it is.

        A room's state may be thousands of events: parsing each stored event and encoding it again
        is most of the answer's cost. An event whose text is not exactly what ``pdu_for_federation``
        gives (it carries ``unsigned``, or a redaction targets it) goes the usual way.
        """
        state_ids = await self._state_before(origin, room_id, event_id)
        chain = await self._events.get_auth_chain_ids(state_ids)
        pdus, auth_chain = await self._pdu_texts(state_ids), await self._pdu_texts(chain)
        return ('{"pdus":[' + ",".join(pdus) + '],"auth_chain":[' + ",".join(auth_chain) + "]}").encode("utf-8")

    async def _pdu_texts(self, event_ids: Collection[str]) -> list[str]:
        """What ``_pdus`` gives (each event without ``unsigned``, by depth), as JSON texts."""
        texts = await self._events.get_unredacted_pdu_texts(event_ids)
        # '"unsigned"' in the text (a key, or a value that is merely that word): re-encoded without it.
        usable = {i: t for i, t in texts.items() if '"unsigned"' not in t[1]}
        others = await self._events.get_events([i for i in event_ids if i not in usable])
        keyed = [((depth, i), text) for i, (depth, text) in usable.items()]
        keyed += [((e.depth, i), encode_json(pdu_for_federation(e)).decode("utf-8")) for i, e in others.items()]
        keyed.sort(key=lambda k: k[0])
        return [text for _key, text in keyed]

    async def _state_before(self, origin: str, room_id: str, event_id: str) -> list[str]:
        await self._require_host_in_room(origin, room_id)
        await self._event_in_room(room_id, event_id)
        if self._partial is not None and await self._partial.is_partial(room_id):
            # Our state there lacks members until the resync: another server must answer.
            raise NotFoundError(f"This server does not know the full state of {room_id} yet")
        state = await self._state.get_state_ids_for_event(event_id, before=True)
        if state is None:
            raise NotFoundError(f"The state at {event_id} is not known here")
        return list(state.values())

    async def get_event_auth(self, origin: str, room_id: str, event_id: str) -> JsonDict:
        """``{auth_chain}``: every event in the auth chain of ``event_id``."""
        await self._require_host_in_room(origin, room_id)
        await self._event_in_room(room_id, event_id)
        chain = await self._events.get_auth_chain_ids([event_id])
        return {"auth_chain": await self._pdus(chain)}

    async def _pdus(self, event_ids: Collection[str]) -> list[JsonDict]:
        events = await self._events.get_events(event_ids)
        ordered = sorted(events.values(), key=lambda e: (e.depth, e.event_id))
        return [pdu_for_federation(e) for e in ordered]

    # -- history ------------------------------------------------------------------

    async def backfill(self, origin: str, room_id: str, event_ids: Sequence[str], limit: int) -> JsonDict:
        """The events ``event_ids`` and those before them (by ``prev_events``), deepest first, up to ``limit``."""
        await self._require_host_in_room(origin, room_id)
        limit = max(0, min(limit, MAX_EVENTS_PER_REQUEST))
        found = await self._walk_back(room_id, event_ids, set(), limit, min_depth=None, include_start=True)
        shown = await self._visibility.filter_events_for_server(origin, found)
        return self.transaction(pdu_for_federation(e) for e in shown)

    async def get_missing_events(
        self, origin: str, room_id: str, earliest: Sequence[str], latest: Sequence[str], limit: int, min_depth: int
    ) -> JsonDict:
        """``{events}``: ancestors of ``latest`` not in (or behind) ``earliest``, at least ``min_depth`` deep."""
        await self._require_host_in_room(origin, room_id)
        limit = max(0, min(limit, MAX_EVENTS_PER_REQUEST))
        found = await self._walk_back(room_id, latest, set(earliest), limit, min_depth, include_start=False)
        found.sort(key=lambda e: (e.depth, e.event_id))
        shown = await self._visibility.filter_events_for_server(origin, found)
        return {"events": [pdu_for_federation(e) for e in shown]}

    async def _walk_back(
        self,
        room_id: str,
        start: Sequence[str],
        stop_at: set[str],
        limit: int,
        min_depth: Optional[int],
        include_start: bool,
    ) -> list[Event]:
        """Breadth-first over ``prev_events``, deepest event first; rejected events are neither returned nor crossed."""
        seen = set(start) | stop_at
        queue: list[tuple[int, str, Event]] = []

        async def push(ids: Iterable[str]) -> None:
            fresh = [i for i in ids if i not in seen]
            seen.update(fresh)
            for event in (await self._events.get_events(fresh)).values():
                if event.room_id == room_id and event.internal_metadata.rejected_reason is None:
                    heapq.heappush(queue, (-event.depth, event.event_id, event))

        starting = [e for e in (await self._events.get_events(start)).values() if e.room_id == room_id]
        if include_start:
            for event in starting:
                if event.internal_metadata.rejected_reason is None:
                    heapq.heappush(queue, (-event.depth, event.event_id, event))
        else:
            for event in starting:
                await push(event.prev_event_ids())
        found: list[Event] = []
        while queue and len(found) < limit:
            _neg_depth, _eid, event = heapq.heappop(queue)
            if min_depth is not None and event.depth < min_depth:
                continue
            found.append(event)
            await push(event.prev_event_ids())
        return found

    # -- queries ------------------------------------------------------------------

    async def query_profile(self, user_id: str, field: Optional[str]) -> JsonDict:
        if not self._allow_profile_lookup:
            raise AuthError(403, "Profile lookup over federation is disabled on this server", Codes.FORBIDDEN)
        try:
            user = UserID.from_string(user_id)
        except IdentifierError:
            raise InvalidParamError(f"{user_id!r} is not a user id") from None
        if user.domain != self._server_name:
            raise InvalidParamError(f"{user_id} is not a user of this server")
        if field is not None and field not in PROFILE_FIELDS:
            raise NotFoundError(f"Profile field {field!r} is not known here")
        profile = await self._profiles.get_profile(user_id)
        if profile is None:
            raise NotFoundError("User does not exist.")
        values: dict[str, Any] = dict(zip(PROFILE_FIELDS, profile))
        fields = PROFILE_FIELDS if field is None else (field,)
        return {name: values[name] for name in fields if values[name] is not None}

    async def query_directory(self, room_alias: str) -> JsonDict:
        try:
            alias = RoomAlias.from_string(room_alias)
        except IdentifierError:
            raise InvalidParamError(f"{room_alias!r} is not a room alias") from None
        if alias.domain != self._server_name:
            raise NotFoundError(f"Room alias {room_alias} is not one of this server's")
        found = await self._aliases.get_alias(room_alias)
        if found is None:
            raise NotFoundError("Room alias not found.")
        room_id = found[0]
        hosts = await self._visibility.get_hosts_in_room(room_id)
        servers = [self._server_name] + [h for h in hosts if h != self._server_name]
        return {"room_id": room_id, "servers": servers}


def parse_limit(value: Any, name: str = "limit") -> int:
    """A non-negative integer from a JSON body (for get_missing_events)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MatrixError(400, f"'{name}' must be a non-negative integer", Codes.INVALID_PARAM)
    return value
