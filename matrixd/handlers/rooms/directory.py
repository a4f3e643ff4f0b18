"""The published room directory: which rooms are listed, and ``/publicRooms``.

Publishing (or unpublishing) a room takes a server admin, or a joined member
whose power level allows changing the room's ``m.room.canonical_alias`` (the
same power that curates how the room is advertised).

``/publicRooms`` pages are keyed by ``(joined members, room id)``; the
``next_batch`` / ``prev_batch`` tokens carry that key and the direction, so
either one can be passed back as ``since``.  Another server's directory is
fetched through an optional :class:`RemoteRoomDirectory` (federation).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Optional, Protocol

from matrixd.api.errors import AuthError, Codes, InvalidParamError, MatrixError, NotFoundError
from matrixd.events.event import JsonDict
from matrixd.handlers.visibility import visibility_of
from matrixd.state.auth import can_send_event
from matrixd.storage.accounts import UserStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.directory import DirectoryKey, DirectoryQuery, PublicRoomsStore
from matrixd.storage.events import EventStore
from matrixd.storage.rooms import RoomStore
from matrixd.types import Requester

MAX_SEARCH_TERM = 1000


class RemoteRoomDirectory(Protocol):
    """Fetches another server's published room directory over federation."""

    async def get_remote_public_rooms(
        self, server: str, *, limit: Optional[int], since: Optional[str], query: DirectoryQuery,
        third_party_instance_id: Optional[str], include_all_networks: bool,
    ) -> JsonDict: ...


def encode_since(direction: str, key: DirectoryKey) -> str:
    """An opaque ``since`` token: direction, member count and room id."""
    raw = f"{direction}{key.joined_members}:{key.room_id}".encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_since(token: str) -> tuple[str, DirectoryKey]:
    """``(direction, key)`` of a token from :func:`encode_since`; 400 ``M_INVALID_PARAM`` otherwise."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
        direction, rest = raw[0], raw[1:]
        count, _, room_id = rest.partition(":")
        if direction not in ("n", "p") or not count.isdigit() or not room_id.startswith("!"):
            raise ValueError(raw)
        return direction, DirectoryKey(int(count), room_id)
    except (ValueError, IndexError, UnicodeDecodeError, binascii.Error):
        raise InvalidParamError(f"Invalid pagination token {token!r}") from None


def parse_directory_filter(raw: Any) -> DirectoryQuery:
    """The ``filter`` of ``POST /publicRooms``; 400 ``M_BAD_JSON`` naming the bad field."""
    if raw is None:
        return DirectoryQuery()
    if not isinstance(raw, dict):
        raise MatrixError(400, "filter must be an object", Codes.BAD_JSON)
    term = raw.get("generic_search_term")
    if term is not None and not isinstance(term, str):
        raise MatrixError(400, "filter.generic_search_term must be a string", Codes.BAD_JSON)
    if term is not None and len(term) > MAX_SEARCH_TERM:
        raise MatrixError(400, "filter.generic_search_term is too long", Codes.INVALID_PARAM)
    room_types = raw.get("room_types")
    if room_types is not None:
        if not isinstance(room_types, list) or not all(t is None or isinstance(t, str) for t in room_types):
            raise MatrixError(400, "filter.room_types must be a list of strings or nulls", Codes.BAD_JSON)
        room_types = tuple(room_types)
    return DirectoryQuery(search_term=term.strip() or None if term else None, room_types=room_types)


class RoomDirectoryHandler:
    def __init__(
        self,
        *,
        server_name: str,
        rooms: RoomStore,
        public_rooms: PublicRoomsStore,
        events: EventStore,
        current_state: CurrentStateStore,
        users: UserStore,
        remote: Optional[RemoteRoomDirectory] = None,
    ) -> None:
        self._server_name = server_name
        self._rooms = rooms
        self._public = public_rooms
        self._events = events
        self._current = current_state
        self._users = users
        self._remote = remote

    def set_remote_directory(self, remote: RemoteRoomDirectory) -> None:
        """Fetch other servers' directories through ``remote`` (wired once federation exists)."""
        self._remote = remote

    # -- visibility -------------------------------------------------------------

    async def get_visibility(self, room_id: str) -> str:
        room = await self._rooms.get_room(room_id)
        if room is None:
            raise NotFoundError("Room not found")
        return "public" if room.is_public else "private"

    async def set_visibility(self, requester: Requester, room_id: str, visibility: str) -> None:
        """Publish or unpublish a room (admins, or members with the power to edit its canonical alias)."""
        if visibility not in ("public", "private"):
            raise MatrixError(400, "visibility must be 'public' or 'private'", Codes.INVALID_PARAM)
        if await self._rooms.get_room(room_id) is None:
            raise NotFoundError("Room not found")
        user = await self._users.get_user(requester.user_id)
        if user is None or not user.admin:
            await self._check_can_publish(requester.user_id, room_id)
        if requester.shadow_banned and visibility == "public":
            return  # answered as done; the room stays out of everyone's directory
        await self._rooms.set_room_is_public(room_id, visibility == "public")

    async def _check_can_publish(self, user_id: str, room_id: str) -> None:
        membership = await self._current.get_membership(room_id, user_id)
        if membership is None or membership.membership != "join":
            raise AuthError(403, "You must be in the room to change its directory visibility")
        room_version = await self._rooms.get_room_version(room_id)
        auth_state = {}
        for key in (("m.room.create", ""), ("m.room.power_levels", "")):
            event = await self._current.get_current_state_event(room_id, *key)
            if event is not None:
                auth_state[key] = event
        if not can_send_event(room_version, user_id, "m.room.canonical_alias", True, auth_state):
            raise AuthError(403, "You do not have the power to change this room's directory visibility")

    # -- listing ----------------------------------------------------------------

    async def get_public_rooms(
        self,
        *,
        server: Optional[str] = None,
        limit: Optional[int] = None,
        since: Optional[str] = None,
        query: DirectoryQuery = DirectoryQuery(),
        third_party_instance_id: Optional[str] = None,
        include_all_networks: bool = False,
    ) -> JsonDict:
        """The ``/publicRooms`` response body."""
        if server is not None and server != self._server_name:
            if self._remote is None:
                raise MatrixError(404, f"Cannot fetch the room directory of {server}", Codes.NOT_FOUND)
            return await self._remote.get_remote_public_rooms(
                server, limit=limit, since=since, query=query, third_party_instance_id=third_party_instance_id,
                include_all_networks=include_all_networks,
            )
        if third_party_instance_id is not None and not include_all_networks:
            # No application service networks are bridged into this directory.
            return {"chunk": [], "total_room_count_estimate": 0}

        direction, key = decode_since(since) if since is not None else ("n", None)
        if limit == 0:
            return {"chunk": [], "total_room_count_estimate": await self._public.count_public_rooms(query)}
        fetch = None if limit is None else limit + 1
        if direction == "n":
            keys = await self._public.get_public_rooms(query, limit=fetch, after=key)
            more = limit is not None and len(keys) > limit
            keys = keys[:limit] if more else keys
            has_next, has_prev = more, key is not None and bool(keys)
        else:
            keys = await self._public.get_public_rooms(query, limit=fetch, before=key)
            more = limit is not None and len(keys) > limit
            keys = keys[1:] if more else keys
            has_next, has_prev = bool(keys), more

        body: JsonDict = {
            "chunk": await self._entries(keys),
            "total_room_count_estimate": await self._public.count_public_rooms(query),
        }
        if has_next:
            body["next_batch"] = encode_since("n", keys[-1])
        if has_prev:
            body["prev_batch"] = encode_since("p", keys[0])
        return body

    async def _entries(self, keys: list[DirectoryKey]) -> list[JsonDict]:
        state_ids = await self._public.get_summary_state_ids([k.room_id for k in keys])
        events = await self._events.get_events({eid for ids in state_ids.values() for eid in ids.values()})
        entries = []
        for key in keys:
            content = {
                etype: events[eid].content for etype, eid in state_ids.get(key.room_id, {}).items() if eid in events
            }
            entries.append(_entry(key, content))
        return entries


def _entry(key: DirectoryKey, state: dict[str, JsonDict]) -> JsonDict:
    """One ``PublishedRoomsChunk`` from the room's summary state contents."""
    entry: JsonDict = {
        "room_id": key.room_id,
        "num_joined_members": key.joined_members,
        "world_readable": "m.room.history_visibility" in state
        and visibility_of(state["m.room.history_visibility"]) == "world_readable",
        "guest_can_join": state.get("m.room.guest_access", {}).get("guest_access") == "can_join",
    }
    for field, etype, ckey in (
        ("name", "m.room.name", "name"),
        ("topic", "m.room.topic", "topic"),
        ("canonical_alias", "m.room.canonical_alias", "alias"),
        ("avatar_url", "m.room.avatar", "url"),
        ("join_rule", "m.room.join_rules", "join_rule"),
        ("room_type", "m.room.create", "type"),
    ):
        value = state.get(etype, {}).get(ckey)
        if isinstance(value, str) and value:
            entry[field] = value
    return entry
