"""Server administration of rooms: listing and details, members and state,
blocking, and making a local user a room admin.

Room deletion and history purges (long, resumable) live in ``deletion.py``.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from matrixd.api.errors import AuthError, Codes, MatrixError, NotFoundError
from matrixd.events.event import Event
from matrixd.handlers.rooms.membership import RoomMemberHandler
from matrixd.handlers.rooms.send import EventSendHandler
from matrixd.handlers.rooms.serialize import ClientEventSerializer
from matrixd.storage.admin import ROOM_ORDER_COLUMNS, AdminStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.rooms import RoomStore
from matrixd.types import JsonDict, Requester, get_domain_from_id

logger = logging.getLogger(__name__)

_DETAIL_TYPES = ("m.room.name", "m.room.canonical_alias", "m.room.join_rules", "m.room.guest_access",
                 "m.room.history_visibility", "m.room.encryption", "m.room.create", "m.room.topic",
                 "m.room.avatar")


def _content(events: dict[str, Event], state: Any, event_type: str) -> JsonDict:
    event_id = state.get((event_type, ""))
    event = events.get(event_id) if event_id is not None else None
    return dict(event.content) if event is not None else {}


class RoomAdminHandler:
    def __init__(
        self, *, server_name: str, store: AdminStore, rooms: RoomStore, events: EventStore,
        current_state: CurrentStateStore, membership: RoomMemberHandler, send: EventSendHandler,
        serializer: ClientEventSerializer,
    ) -> None:
        self._server_name = server_name
        self._store = store
        self._rooms = rooms
        self._events = events
        self._current = current_state
        self._membership = membership
        self._send = send
        self._serializer = serializer

    async def _summaries(self, rooms: list[tuple[str, str, Optional[str], bool]]) -> list[JsonDict]:
        counts = await self._store.get_room_counts([r[0] for r in rooms], self._server_name)
        out = []
        for room_id, version, creator, public in rooms:
            state = await self._current.get_current_state_ids(room_id)
            wanted = [state[(t, "")] for t in _DETAIL_TYPES if (t, "") in state]
            events = await self._events.get_events(wanted)
            create = _content(events, state, "m.room.create")
            joined, joined_local, state_count = counts.get(room_id, (0, 0, 0))
            out.append({
                "room_id": room_id,
                "name": _content(events, state, "m.room.name").get("name"),
                "canonical_alias": _content(events, state, "m.room.canonical_alias").get("alias"),
                "joined_members": joined, "joined_local_members": joined_local, "version": version,
                "creator": creator,
                "encryption": _content(events, state, "m.room.encryption").get("algorithm"),
                "federatable": create.get("m.federate", True) is not False, "public": public,
                "join_rules": _content(events, state, "m.room.join_rules").get("join_rule"),
                "guest_access": _content(events, state, "m.room.guest_access").get("guest_access"),
                "history_visibility": _content(events, state, "m.room.history_visibility").get(
                    "history_visibility"),
                "state_events": state_count, "room_type": create.get("type"),
                "topic": _content(events, state, "m.room.topic").get("topic"),
                "avatar": _content(events, state, "m.room.avatar").get("url"),
            })
        return out

    async def list_rooms(self, *, start: int, limit: int, order_by: str, reverse: bool,
                         search_term: Optional[str]) -> JsonDict:
        """``GET /_synapse/admin/v1/rooms``: summaries sorted and paged in memory (one pass over rooms)."""
        if order_by not in ROOM_ORDER_COLUMNS:
            raise MatrixError(400, f"Unknown order_by {order_by!r}", Codes.INVALID_PARAM)
        summaries = await self._summaries(await self._store.list_room_ids())
        if search_term:
            term = search_term.lower()
            summaries = [s for s in summaries if term in (s["name"] or "").lower()
                         or term in (s["canonical_alias"] or "").lower() or term == s["room_id"].lower()]
        numeric = order_by in ("joined_members", "joined_local_members", "state_events")
        default_desc = numeric

        def key(s: JsonDict) -> tuple[Any, str]:
            value = s[order_by]
            if numeric:
                return (value or 0, s["room_id"])
            return (str(value) if value is not None else "", s["room_id"])

        summaries.sort(key=key, reverse=default_desc != reverse)
        total = len(summaries)
        page = summaries[start:start + limit]
        for s in page:
            s.pop("topic", None)
            s.pop("avatar", None)
        out: JsonDict = {"rooms": page, "offset": start, "total_rooms": total}
        if start + len(page) < total:
            out["next_batch"] = start + len(page)
        if start > 0:
            out["prev_batch"] = max(0, start - limit)
        return out

    async def _existing(self, room_id: str) -> tuple[str, str, Optional[str], bool]:
        room = await self._rooms.get_room(room_id)
        if room is None:
            raise NotFoundError("Room not found")
        return room_id, room.room_version, room.creator, room.is_public

    async def room_details(self, room_id: str) -> JsonDict:
        summary = (await self._summaries([await self._existing(room_id)]))[0]
        summary["forgotten"] = False
        return summary

    async def members(self, room_id: str) -> JsonDict:
        await self._existing(room_id)
        members = await self._current.get_users_in_room(room_id)
        return {"members": members, "total": len(members)}

    async def state(self, room_id: str) -> JsonDict:
        await self._existing(room_id)
        state = await self._current.get_current_state_ids(room_id)
        events = await self._events.get_events_as_list(sorted(state.values()))
        return {"state": await self._serializer.serialize_events(events, None)}

    async def set_block(self, requester: Requester, room_id: str, block: bool) -> JsonDict:
        if block:
            await self._store.block_room(room_id, requester.user_id)
        else:
            await self._store.unblock_room(room_id)
        return {"block": block}

    async def get_block(self, room_id: str) -> JsonDict:
        by = await self._store.get_room_block(room_id)
        return {"block": True, "user_id": by} if by is not None else {"block": False}

    async def make_room_admin(self, requester: Requester, room_id: str, user_id: Optional[str]) -> None:
        """Give ``user_id`` (default: the requester) the highest power level, as a local room admin.

        The change is sent by the local member with the most power; a user not in
        the room joins it first (invited by that member unless the room is public).
        """
        await self._existing(room_id)
        target = user_id or requester.user_id
        if get_domain_from_id(target) != self._server_name:
            raise MatrixError(400, "Only local users can be made room admins", Codes.INVALID_PARAM)
        state = await self._current.get_current_state_ids(room_id)
        pl_id = state.get(("m.room.power_levels", ""))
        create_id = state.get(("m.room.create", ""))
        pl_event = await self._events.get_event(pl_id) if pl_id else None
        create_event = await self._events.get_event(create_id) if create_id else None
        levels: JsonDict = dict(pl_event.content) if pl_event is not None else {}
        users_levels: dict[str, Any] = dict(levels.get("users") or {})
        joined = [u for u in await self._current.get_users_in_room(room_id)
                  if get_domain_from_id(u) == self._server_name]
        creators = set()
        if create_event is not None:
            creators.add(create_event.sender)
            extra = create_event.content.get("additional_creators")
            if isinstance(extra, list):
                creators.update(x for x in extra if isinstance(x, str))

        def power(u: str) -> float:
            if u in creators:
                return float("inf")
            value = users_levels.get(u, levels.get("users_default", 0))
            return float(value) if isinstance(value, int) else 0.0

        candidates = sorted((u for u in joined if u != target), key=power, reverse=True)
        if not candidates and target not in joined:
            raise MatrixError(400, "No local member of the room can grant power", Codes.INVALID_PARAM)
        admin = candidates[0] if candidates else target
        admin_req = Requester(user_id=admin, device_id=None, access_token_id=None)
        membership = await self._current.get_membership(room_id, target)
        if membership is None or membership.membership != "join":
            if membership is None or membership.membership != "invite":
                try:
                    await self._membership.update_membership(admin_req, target, room_id, "invite")
                except AuthError:
                    logger.info("make_room_admin: %s could not invite %s; trying a join", admin, target)
            target_req = Requester(user_id=target, device_id=None, access_token_id=None)
            await self._membership.update_membership(target_req, target, room_id, "join")
        if target in creators or admin == target:
            return
        top = max([v for v in users_levels.values() if isinstance(v, int)] + [100])
        if power(admin) != float("inf"):
            top = int(power(admin))
        users_levels[target] = top
        levels["users"] = users_levels
        await self._send.send_event(admin_req, room_id, "m.room.power_levels", levels, state_key="")
