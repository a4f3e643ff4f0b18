"""The published room directory as other servers query it (``/_matrix/federation/v1/publicRooms``).

A minimal directory built from the ``rooms.is_public`` flag and each room's
current state, so federation can answer before a client-side directory
handler exists; it has one method, ``get_public_rooms``, so a fuller
implementation (shared with the client API) can replace it in the wiring.

Rooms are ordered by joined members (most first), then room id. ``since``
tokens are opaque offsets into that order (``o<offset>``); a token from
another server or a bad one is 400 ``M_INVALID_PARAM``. The filter's
``generic_search_term`` matches name, topic and canonical alias
(case-insensitive substring); ``room_types`` lists the wanted room types,
``null`` meaning rooms without one. This server bridges no third-party
networks, so a ``third_party_instance_id`` matches nothing.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence

from matrixd.api.errors import InvalidParamError
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.rooms import RoomStore

JsonDict = dict[str, Any]

_TOKEN_RE = re.compile(r"^o([0-9]{1,9})$")
_STATE_FIELDS = (
    ("m.room.name", "name", "name"),
    ("m.room.topic", "topic", "topic"),
    ("m.room.canonical_alias", "alias", "canonical_alias"),
    ("m.room.avatar", "url", "avatar_url"),
    ("m.room.join_rules", "join_rule", "join_rule"),
)


class PublicRoomList:
    def __init__(self, rooms: RoomStore, current_state: CurrentStateStore) -> None:
        self._rooms = rooms
        self._current_state = current_state

    async def get_public_rooms(
        self,
        limit: Optional[int] = None,
        since: Optional[str] = None,
        search_term: Optional[str] = None,
        room_types: Optional[Sequence[Optional[str]]] = None,
        third_party_instance_id: Optional[str] = None,
    ) -> JsonDict:
        """One page of the directory, in the ``PublicRoomsResponse`` shape."""
        offset = _parse_since(since)
        if limit is not None and limit <= 0:
            limit = None  # the spec's default "0: no limit"
        entries = [] if third_party_instance_id is not None else await self._entries()
        if search_term:
            needle = search_term.casefold()
            entries = [e for e in entries if any(
                isinstance(e.get(k), str) and needle in e[k].casefold() for k in ("name", "topic", "canonical_alias")
            )]
        if room_types is not None:
            wanted = set(room_types)
            entries = [e for e in entries if e.get("room_type") in wanted]
        entries.sort(key=lambda e: (-e["num_joined_members"], e["room_id"]))
        end = len(entries) if limit is None else min(len(entries), offset + limit)
        response: JsonDict = {"chunk": entries[offset:end], "total_room_count_estimate": len(entries)}
        if end < len(entries):
            response["next_batch"] = f"o{end}"
        if offset > 0:
            response["prev_batch"] = f"o{max(0, offset - (limit or offset))}"
        return response

    async def _entries(self) -> list[JsonDict]:
        out = []
        for room_id in await self._rooms.get_public_room_ids():
            out.append(await self._entry(room_id))
        return out

    async def _entry(self, room_id: str) -> JsonDict:
        entry: JsonDict = {
            "room_id": room_id,
            "num_joined_members": len(await self._current_state.get_users_in_room(room_id)),
        }
        for event_type, key, field in _STATE_FIELDS:
            event = await self._current_state.get_current_state_event(room_id, event_type, "")
            value = event.content.get(key) if event is not None else None
            if isinstance(value, str) and value:
                entry[field] = value
        visibility = await self._current_state.get_current_state_event(room_id, "m.room.history_visibility", "")
        entry["world_readable"] = visibility is not None and visibility.content.get("history_visibility") == (
            "world_readable"
        )
        guest = await self._current_state.get_current_state_event(room_id, "m.room.guest_access", "")
        entry["guest_can_join"] = guest is not None and guest.content.get("guest_access") == "can_join"
        create = await self._current_state.get_current_state_event(room_id, "m.room.create", "")
        room_type = create.content.get("type") if create is not None else None
        if isinstance(room_type, str):
            entry["room_type"] = room_type
        return entry


def _parse_since(since: Optional[str]) -> int:
    if since is None or since == "":
        return 0
    m = _TOKEN_RE.match(since)
    if m is None:
        raise InvalidParamError(f"Unknown pagination token {since!r}")
    return int(m.group(1))
