"""Room state for clients: reading it (``GET /state...``) and setting it (``PUT /state/{type}/{key}``).

Readers see the current state, or the state when they left; non-members see
it only in world_readable rooms.  Writes of ``m.room.member`` go through the
membership handler (so joins get profiles, kicks and unbans their checks), and
``m.room.canonical_alias`` is checked against the aliases this server holds:
a malformed alias is ``M_INVALID_PARAM``, a local alias that does not point at
the room ``M_BAD_ALIAS``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from matrixd.api.errors import Codes, MatrixError, NotFoundError
from matrixd.events.event import JsonDict
from matrixd.handlers.rooms.access import RoomAccessChecker
from matrixd.handlers.rooms.members import FullStateWaiter, wait_for_full_state
from matrixd.handlers.rooms.membership import RoomMemberHandler
from matrixd.handlers.rooms.send import EventSendHandler
from matrixd.handlers.rooms.serialize import ClientEventSerializer
from matrixd.storage.aliases import AliasStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.types import IdentifierError, Requester, RoomAlias

MEMBER = "m.room.member"
CANONICAL_ALIAS = "m.room.canonical_alias"


def parse_room_alias(alias: object) -> RoomAlias:
    """A room alias by the appendix grammar (no NUL, at most 255 bytes); 400 ``M_INVALID_PARAM`` otherwise."""
    if not isinstance(alias, str) or "\x00" in alias or len(alias.encode("utf-8")) > 255:
        raise MatrixError(400, f"Invalid room alias {alias!r}", Codes.INVALID_PARAM)
    try:
        return RoomAlias.from_string(alias)
    except IdentifierError:
        raise MatrixError(400, f"Invalid room alias {alias!r}", Codes.INVALID_PARAM) from None


class RoomStateHandler:
    def __init__(
        self,
        *,
        server_name: str,
        access: RoomAccessChecker,
        events: EventStore,
        current_state: CurrentStateStore,
        aliases: AliasStore,
        send: EventSendHandler,
        membership: RoomMemberHandler,
        serializer: ClientEventSerializer,
    ) -> None:
        self._server_name = server_name
        self._access = access
        self._events = events
        self._current = current_state
        self._aliases = aliases
        self._send = send
        self._membership = membership
        self._serializer = serializer
        self._full_state: Optional[FullStateWaiter] = None

    def set_full_state_waiter(self, waiter: FullStateWaiter) -> None:
        """A partial-state room's whole state (or a membership it lacks) is read after its resync."""
        self._full_state = waiter

    async def get_state(self, requester: Requester, room_id: str) -> list[JsonDict]:
        """Every state event the user may see of the room."""
        access = await self._access.check_can_read(requester.user_id, room_id)
        await wait_for_full_state(self._full_state, room_id)
        state = await self._access.state_ids_for_reader(access)
        events = await self._events.get_events_as_list([eid for _, eid in sorted(state.items())])
        return await self._serializer.serialize_events(events, requester)

    async def get_state_event(
        self, requester: Requester, room_id: str, event_type: str, state_key: str, *, as_event: bool = False
    ) -> JsonDict:
        """One state entry's content (or the whole client event); 404 if the key is not in the state."""
        access = await self._access.check_can_read(requester.user_id, room_id)
        state = await self._access.state_ids_for_reader(access)
        event_id = state.get((event_type, state_key))
        if event_id is None and event_type == MEMBER and self._full_state is not None:
            # Absent from a partial state may only mean omitted: look again once the state is full.
            await wait_for_full_state(self._full_state, room_id)
            access = await self._access.check_can_read(requester.user_id, room_id)
            event_id = (await self._access.state_ids_for_reader(access)).get((event_type, state_key))
        event = await self._events.get_event(event_id) if event_id is not None else None
        if event is None:
            raise NotFoundError(f"Event not found in room state: {event_type!r} / {state_key!r}")
        if as_event:
            return await self._serializer.serialize_event(event, requester)
        return dict(event.content)

    async def set_state(
        self, requester: Requester, room_id: str, event_type: str, state_key: str, content: Mapping[str, Any],
        *, txn_id: Optional[str] = None, origin_server_ts: Optional[int] = None,
    ) -> str:
        """Send a state event as the requester; returns its event id.

        ``origin_server_ts``: an application service's massaged timestamp (not applied to memberships,
        which go through the membership handler).
        """
        if event_type == MEMBER:
            return await self._set_membership(requester, room_id, state_key, content)
        if event_type == CANONICAL_ALIAS:
            await self.check_canonical_alias(room_id, content)
        return await self._send.send_event(
            requester, room_id, event_type, content, state_key=state_key, txn_id=txn_id,
            origin_server_ts=origin_server_ts,
        )

    async def _set_membership(
        self, requester: Requester, room_id: str, target: str, content: Mapping[str, Any]
    ) -> str:
        membership = content.get("membership")
        if not isinstance(membership, str):
            raise MatrixError(400, "content.membership must be a string", Codes.BAD_JSON)
        reason = content.get("reason")
        extra = {k: v for k, v in content.items() if k not in ("membership", "reason")}
        action = membership
        if membership == "leave" and target != requester.user_id:
            current = await self._current.get_membership(room_id, target)
            action = "unban" if current is not None and current.membership == "ban" else "kick"
        elif membership not in ("join", "invite", "leave", "ban", "knock"):
            raise MatrixError(400, f"Unknown membership {membership!r}", Codes.BAD_JSON)
        return await self._membership.update_membership(
            requester, target, room_id, action, reason=reason, extra_content=extra or None
        )

    async def check_canonical_alias(self, room_id: str, content: Mapping[str, Any]) -> None:
        """Refuse aliases that are malformed, or local but not pointing at ``room_id``."""
        candidates: list[object] = []
        alias = content.get("alias")
        if alias is not None:
            candidates.append(alias)
        alt = content.get("alt_aliases")
        if alt is not None:
            if not isinstance(alt, list):
                raise MatrixError(400, "alt_aliases must be a list of room aliases", Codes.INVALID_PARAM)
            candidates.extend(alt)
        for candidate in candidates:
            parsed = parse_room_alias(candidate)
            if parsed.domain != self._server_name:
                continue  # only this server's aliases can be checked without federation
            mapping = await self._aliases.get_alias(parsed.to_string())
            if mapping is None or mapping[0] != room_id:
                raise MatrixError(400, f"Room alias {parsed} does not point to the room", Codes.BAD_ALIAS)
