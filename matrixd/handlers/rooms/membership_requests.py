"""Client membership requests: what the client API adds around the room core's membership handler.

* ``/join/{roomIdOrAlias}`` and ``/knock/{roomIdOrAlias}`` resolve aliases
  and gather the servers to join through (``via``, the deprecated
  ``server_name``, the alias's servers);
* guests may only join rooms whose ``m.room.guest_access`` is ``can_join``;
* joins and invites are rate limited like the ``rc_joins`` / ``rc_invites``
  settings say (application services are exempt).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import attrs

from matrixd.api.errors import AuthError, Codes, MatrixError
from matrixd.handlers.ratelimit import Ratelimiter
from matrixd.handlers.rooms.aliases import RoomAliasHandler
from matrixd.handlers.rooms.membership import RoomMemberHandler
from matrixd.storage.current_state import CurrentStateStore
from matrixd.types import JsonDict, Requester, is_valid_room_id


@attrs.frozen(slots=True)
class MembershipRatelimits:
    joins_local: Ratelimiter
    joins_per_room: Ratelimiter
    invites_per_room: Ratelimiter
    invites_per_user: Ratelimiter
    invites_per_issuer: Ratelimiter


class MembershipRequestHandler:
    def __init__(
        self,
        *,
        membership: RoomMemberHandler,
        aliases: RoomAliasHandler,
        current_state: CurrentStateStore,
        limits: MembershipRatelimits,
    ) -> None:
        self._membership = membership
        self._aliases = aliases
        self._current = current_state
        self._limits = limits
        self._service_exempt: Callable[[str], bool] = _never_exempt

    def set_app_service_exemption(self, exempt: Callable[[str], bool]) -> None:
        """Exempt from the join and invite rate limits the services ``exempt(service_id)`` names."""
        self._service_exempt = exempt

    def _rate_limited(self, requester: Requester) -> bool:
        """Everyone is, except application services registered with ``rate_limited: false``."""
        return requester.app_service_id is None or not self._service_exempt(requester.app_service_id)

    async def resolve_room(self, room_id_or_alias: str, servers: Sequence[str]) -> tuple[str, list[str]]:
        """``(room_id, servers to try)`` for a room id or alias; 400 if it is neither, 404 for unknown aliases."""
        if room_id_or_alias.startswith("#"):
            target = await self._aliases.resolve(room_id_or_alias)
            return target.room_id, list(dict.fromkeys([*servers, *target.servers]))
        if room_id_or_alias.startswith("!") and is_valid_room_id(room_id_or_alias):
            return room_id_or_alias, list(dict.fromkeys(servers))
        raise MatrixError(400, f"{room_id_or_alias!r} is not a room id or alias", Codes.INVALID_PARAM)

    async def join(
        self, requester: Requester, room_id: str, *, reason: Optional[str] = None,
        servers: Sequence[str] = (),
    ) -> str:
        """Join the requester to a room; returns the room id."""
        if requester.is_guest and not await self._guests_can_join(room_id):
            raise AuthError(403, "Guest access is not allowed in this room", Codes.FORBIDDEN)
        if self._rate_limited(requester):
            current = await self._current.get_membership(room_id, requester.user_id)
            if current is None or current.membership != "join":  # re-joins only update the profile
                self._limits.joins_local.ratelimit(requester.user_id)
                self._limits.joins_per_room.ratelimit(room_id)
        await self._membership.update_membership(
            requester, requester.user_id, room_id, "join", reason=reason, remote_servers=list(servers)
        )
        return room_id

    async def knock(
        self, requester: Requester, room_id: str, *, reason: Optional[str] = None, servers: Sequence[str] = ()
    ) -> str:
        if requester.is_guest:
            raise AuthError(403, "Guests cannot knock", Codes.GUEST_ACCESS_FORBIDDEN)
        await self._membership.update_membership(
            requester, requester.user_id, room_id, "knock", reason=reason, remote_servers=list(servers)
        )
        return room_id

    async def invite(self, requester: Requester, room_id: str, body: JsonDict) -> None:
        """``/invite``: by user id.

        Third-party invites need an identity server, which this server lacks: they are refused
        the same way for everyone, so a shadow-banned user's attempt looks like anyone's and
        reaches nobody.
        """
        user_id = body.get("user_id")
        if user_id is None and any(k in body for k in ("id_server", "medium", "address")):
            raise MatrixError(400, "Third-party invites are not supported by this server", Codes.UNRECOGNIZED)
        if not isinstance(user_id, str):
            raise MatrixError(400, "user_id must be a string", Codes.MISSING_PARAM if user_id is None
                              else Codes.BAD_JSON)
        if self._rate_limited(requester):
            self._limits.invites_per_issuer.ratelimit(requester.user_id)
            self._limits.invites_per_room.ratelimit(room_id)
            self._limits.invites_per_user.ratelimit(user_id)
        await self._membership.update_membership(requester, user_id, room_id, "invite", reason=_reason(body))

    async def change_other(self, requester: Requester, room_id: str, action: str, body: JsonDict) -> None:
        """``/kick``, ``/ban``, ``/unban``: another user's membership."""
        user_id = body.get("user_id")
        if not isinstance(user_id, str):
            raise MatrixError(400, "user_id must be a string", Codes.MISSING_PARAM if user_id is None
                              else Codes.BAD_JSON)
        await self._membership.update_membership(requester, user_id, room_id, action, reason=_reason(body))

    async def leave(self, requester: Requester, room_id: str, reason: Optional[str]) -> None:
        await self._membership.update_membership(requester, requester.user_id, room_id, "leave", reason=reason)

    async def forget(self, requester: Requester, room_id: str) -> None:
        await self._membership.forget(requester, room_id)

    async def _guests_can_join(self, room_id: str) -> bool:
        event = await self._current.get_current_state_event(room_id, "m.room.guest_access", "")
        return event is not None and event.content.get("guest_access") == "can_join"


def _reason(body: JsonDict) -> Optional[str]:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise MatrixError(400, "reason must be a string", Codes.BAD_JSON)
    return reason


def _never_exempt(_service_id: str) -> bool:
    return False
