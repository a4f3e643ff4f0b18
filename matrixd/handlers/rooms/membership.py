"""Membership changes by local users in rooms this server holds state for.

join / invite / leave (incl. rejecting invites and withdrawing knocks) / kick /
ban / unban / knock; every change is an ``m.room.member`` event checked by the
auth rules.  Joining a room only known over federation is the federation
layer's job (``RemoteJoiner``); without it such joins are refused clearly.
"""

from __future__ import annotations

import secrets
from typing import Awaitable, Callable, Optional, Protocol

from matrixd.api.errors import AuthError, Codes, MatrixError, NotFoundError
from matrixd.events.event import Event
from matrixd.handlers.events.creation import EventCreationHandler, EventSpec
from matrixd.handlers.rooms.members import FullStateWaiter, wait_for_full_state
from matrixd.state.auth import get_named_level, get_user_power_level
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.forgotten import ForgottenRoomsStore
from matrixd.storage.profiles import ProfileStore
from matrixd.storage.rooms import RoomStore
from matrixd.types import JsonDict, Requester, UserID, get_domain_from_id

JOIN, INVITE, LEAVE, BAN, KNOCK = "join", "invite", "leave", "ban", "knock"
MAX_REASON_LENGTH = 4096


class RemoteJoiner(Protocol):
    """Joins/knocks on rooms this server is not in, over federation."""

    async def remote_join(self, requester: Requester, room_id: str, servers: list[str],
                          content: JsonDict) -> str: ...


class RemoteMembership(RemoteJoiner, Protocol):
    """Everything membership needs of federation (``matrixd.federation.membership.remote``)."""

    async def remote_knock(self, requester: Requester, room_id: str, servers: list[str],
                           content: JsonDict) -> str: ...

    async def remote_leave(self, requester: Requester, room_id: str, servers: list[str]) -> str: ...

    async def exchange_invite(self, event: Event) -> Event:
        """The invite counter-signed by the invitee's server."""
        ...


class RoomBlocks(Protocol):
    """Rooms a server admin has blocked (``matrixd.storage.admin.AdminStore``)."""

    async def get_room_block(self, room_id: str) -> Optional[str]:
        """The admin who blocked ``room_id``, or None when it is not blocked."""
        ...


class RoomMemberHandler:
    def __init__(
        self,
        *,
        server_name: str,
        rooms: RoomStore,
        current_state: CurrentStateStore,
        profiles: ProfileStore,
        forgotten: ForgottenRoomsStore,
        creation: EventCreationHandler,
        remote_joiner: Optional[RemoteJoiner] = None,
    ) -> None:
        self._server_name = server_name
        self._rooms = rooms
        self._current = current_state
        self._profiles = profiles
        self._forgotten = forgotten
        self._creation = creation
        self._remote_joiner = remote_joiner
        self._remote: Optional[RemoteMembership] = None
        self._blocks: Optional[RoomBlocks] = None
        self._unknown_users: Optional[Callable[[str], Awaitable[bool]]] = None
        self._full_state: Optional[FullStateWaiter] = None

    def set_full_state_waiter(self, waiter: FullStateWaiter) -> None:
        """Membership changes of other users in a room joined with partial state wait for its
        resync: whether they are allowed, and their auth events, depend on the target's
        membership, which the partial state may lack."""
        self._full_state = waiter

    def set_room_blocks(self, blocks: RoomBlocks) -> None:
        """Refuse joins, knocks and invites into rooms ``blocks`` names (admin room blocking)."""
        self._blocks = blocks

    async def check_room_not_blocked(self, room_id: str) -> None:
        """Raise 403 ``M_FORBIDDEN`` if a server admin has blocked ``room_id``.

        Called for local joins/knocks/invites here and by the federation membership
        server for make/send join and knock and inbound invites.
        """
        if self._blocks is not None and await self._blocks.get_room_block(room_id) is not None:
            raise AuthError(403, "This room has been blocked on this server")

    def set_unknown_user_resolver(self, resolver: Callable[[str], Awaitable[bool]]) -> None:
        """Before inviting an unknown local user, let ``resolver`` (application services) provision it."""
        self._unknown_users = resolver

    async def provision_if_unknown(self, user_id: str) -> None:
        """An invite for local ``user_id`` arrived (here or over federation): if the user is unknown,
        the resolver (application services whose namespace covers it) may provision it."""
        if self._unknown_users is not None and await self._profiles.get_profile(user_id) is None:
            await self._unknown_users(user_id)

    def set_remote_membership(self, remote: RemoteMembership) -> None:
        """Route joins, knocks and leaves of rooms we are not in, and remote invites, over federation."""
        self._remote = remote
        self._remote_joiner = remote

    def is_mine(self, user_id: str) -> bool:
        return get_domain_from_id(user_id) == self._server_name

    async def update_membership(
        self,
        requester: Requester,
        target: str,
        room_id: str,
        action: str,
        *,
        reason: Optional[str] = None,
        extra_content: Optional[JsonDict] = None,
        remote_servers: Optional[list[str]] = None,
    ) -> str:
        """Perform ``action`` (join, invite, leave, kick, ban, unban, knock); returns the event id."""
        if not UserID.is_valid(target):
            raise MatrixError(400, f"Invalid user id {target!r}", Codes.INVALID_PARAM)
        if reason is not None:
            if not isinstance(reason, str):
                raise MatrixError(400, "reason must be a string", Codes.BAD_JSON)
            if len(reason) > MAX_REASON_LENGTH:
                raise MatrixError(400, "reason is too long", Codes.INVALID_PARAM)
        if action in (JOIN, KNOCK, INVITE):
            await self.check_room_not_blocked(room_id)
        if action == INVITE and requester.shadow_banned:
            # Shadow-banned users' invites look sent but reach nobody.
            return "$" + secrets.token_urlsafe(32)

        room = await self._rooms.get_room(room_id)
        if room is None:
            if action == KNOCK and self._remote is not None and remote_servers:
                knock_content: JsonDict = {"reason": reason} if reason is not None else {}
                return await self._remote.remote_knock(requester, room_id, remote_servers, knock_content)
            if action == JOIN and self._remote is not None:
                # The remote side adds the servers it knows of (an inviter's, the room id's).
                return await self._remote.remote_join(requester, room_id, list(remote_servers or []),
                                                      dict(extra_content or {}))
            if action in (JOIN, KNOCK) and self._remote_joiner is not None and remote_servers:
                return await self._remote_joiner.remote_join(requester, room_id, remote_servers,
                                                             dict(extra_content or {}))
            if action == "leave" and self._remote is not None and target == requester.user_id:
                return await self._remote.remote_leave(requester, room_id, list(remote_servers or []))
            if action in (JOIN, KNOCK):
                raise NotFoundError("No known servers to join this room through", Codes.NOT_FOUND)
            raise NotFoundError("Unknown room")
        if action == JOIN and self._remote is not None and target == requester.user_id:
            # A room we know but have left: our copy is stale, so join through a server still in it.
            hosts = await self._remote_hosts_if_we_left(room_id)
            if hosts:
                return await self._remote.remote_join(requester, room_id, [*(remote_servers or []), *hosts],
                                                      dict(extra_content or {}))
        if action == "leave" and self._remote is not None and target == requester.user_id:
            # Rejecting an invite to (or withdrawing a knock on) a room we have left: our copy of the
            # room is stale, the leave must go through a server in it.
            hosts = await self._remote_hosts_if_we_left(room_id)
            if hosts:
                return await self._remote.remote_leave(requester, room_id, [*(remote_servers or []), *hosts])

        if target != requester.user_id:
            await wait_for_full_state(self._full_state, room_id)
        membership, content = self._membership_for(action, requester.user_id, target)
        if extra_content:
            content = {**extra_content, **content}
        if reason is not None:
            content["reason"] = reason
        if membership == JOIN:
            await self._add_profile(target, content)
            await self._maybe_authorise_restricted_join(room_id, requester.user_id, content)
        elif membership == INVITE and self.is_mine(target):
            profile = await self._profiles.get_profile(target)
            if profile is None and self._unknown_users is not None:
                await self._unknown_users(target)
                profile = await self._profiles.get_profile(target)
            if profile is not None and profile[0] is not None:
                content.setdefault("displayname", profile[0])

        async with self._creation.room_lock.queue(room_id):
            if action == "unban":
                current = await self._current.get_membership(room_id, target)
                if current is None or current.membership != BAN:
                    raise AuthError(403, f"{target} is not banned")
            elif action == "kick":
                current = await self._current.get_membership(room_id, target)
                if current is None or current.membership not in (JOIN, INVITE, KNOCK):
                    raise AuthError(403, f"{target} is not in the room")
            elif action == "leave":
                current = await self._current.get_membership(room_id, target)
                if current is None or current.membership in (LEAVE, BAN):
                    raise AuthError(403, f"{target} is not in the room")
            spec = EventSpec("m.room.member", requester.user_id, content, target)
            if membership == INVITE and not self.is_mine(target) and self._remote is not None:
                # The invitee's server signs the invite before it enters the room.
                room_version = await self._rooms.get_room_version(room_id)
                draft, state_before, group_before = await self._creation.build(room_id, room_version, spec)
                invite = await self._remote.exchange_invite(draft)
                persisted = await self._creation.persist_built(room_version, invite, state_before, group_before)
            else:
                persisted = await self._creation.send_locked(room_id, spec)
        await self._creation.persister.wait_announced(persisted.stream_ordering)
        if membership == JOIN:
            await self._forgotten.unforget(target, room_id)
        return persisted.event.event_id

    async def _remote_hosts_if_we_left(self, room_id: str) -> list[str]:
        """Other servers in the room if none of our users is joined any more (else none)."""
        hosts: list[str] = []
        for user_id in sorted(await self._current.get_users_in_room(room_id)):
            domain = get_domain_from_id(user_id)
            if domain == self._server_name:
                return []
            if domain not in hosts:
                hosts.append(domain)
        return hosts

    def _membership_for(self, action: str, sender: str, target: str) -> tuple[str, JsonDict]:
        if action == JOIN:
            if sender != target:
                raise AuthError(403, "You can only join as yourself")
            return JOIN, {"membership": JOIN}
        if action == INVITE:
            return INVITE, {"membership": INVITE}
        if action == "leave":
            if sender != target:
                raise AuthError(403, "You can only leave as yourself")
            return LEAVE, {"membership": LEAVE}
        if action == "kick":
            if sender == target:
                raise MatrixError(400, "Use /leave to leave a room", Codes.INVALID_PARAM)
            return LEAVE, {"membership": LEAVE}
        if action == "unban":
            return LEAVE, {"membership": LEAVE}
        if action == BAN:
            return BAN, {"membership": BAN}
        if action == KNOCK:
            if sender != target:
                raise AuthError(403, "You can only knock as yourself")
            return KNOCK, {"membership": KNOCK}
        raise MatrixError(400, f"Unknown membership action {action!r}", Codes.INVALID_PARAM)

    async def _add_profile(self, user_id: str, content: JsonDict) -> None:
        if not self.is_mine(user_id):
            return
        profile = await self._profiles.get_profile(user_id)
        if profile is not None:
            if profile[0] is not None:
                content.setdefault("displayname", profile[0])
            if profile[1] is not None:
                content.setdefault("avatar_url", profile[1])

    async def authorise_restricted_join(self, room_id: str, user_id: str, content: JsonDict) -> None:
        """For a restricted room, set ``join_authorised_via_users_server`` in ``content`` (or refuse with 403).

        Used for remote users' joins too (``make_join``): the allow rules are
        checked against the memberships this server knows.
        """
        await self._maybe_authorise_restricted_join(room_id, user_id, content)

    async def _maybe_authorise_restricted_join(self, room_id: str, user_id: str, content: JsonDict) -> None:
        """For restricted rooms, name a local member who can invite if the joiner meets an allow rule."""
        room_version = await self._rooms.get_room_version(room_id)
        if not room_version.restricted_join_rule:
            return
        join_rules = await self._current.get_current_state_event(room_id, "m.room.join_rules", "")
        if join_rules is None:
            return
        rule = join_rules.content.get("join_rule")
        if rule not in ("restricted", "knock_restricted"):
            return
        current = await self._current.get_membership(room_id, user_id)
        if current is not None and current.membership in (JOIN, INVITE):
            return
        allow = join_rules.content.get("allow")
        if not isinstance(allow, list):
            return
        my_rooms = await self._current.get_rooms_for_user(user_id)
        if not any(isinstance(a, dict) and a.get("type") == "m.room_membership" and a.get("room_id") in my_rooms
                   for a in allow):
            raise AuthError(403, "You do not meet the conditions to join this restricted room")
        authoriser = await self._find_local_inviter(room_id)
        if authoriser is None:
            raise MatrixError(400, "No local user can authorise this join", Codes.UNABLE_TO_GRANT_JOIN)
        content["join_authorised_via_users_server"] = authoriser

    async def _find_local_inviter(self, room_id: str) -> Optional[str]:
        room_version = await self._rooms.get_room_version(room_id)
        state_ids = await self._current.get_current_state_ids(room_id)
        pl = await self._current.get_current_state_event(room_id, "m.room.power_levels", "")
        create = await self._current.get_current_state_event(room_id, "m.room.create", "")
        invite_level = get_named_level(room_version, "invite", pl.content if pl is not None else None)
        auth_state: dict[tuple[str, str], Event] = {}
        if pl is not None:
            auth_state[("m.room.power_levels", "")] = pl
        if create is not None:
            auth_state[("m.room.create", "")] = create
        for user in sorted(await self._current.get_users_in_room(room_id)):
            if not self.is_mine(user) or ("m.room.member", user) not in state_ids:
                continue
            if get_user_power_level(room_version, user, auth_state, create_event=create) >= invite_level:
                return user
        return None

    async def forget(self, requester: Requester, room_id: str) -> None:
        """Forget a room the user has left (their membership must not be join or invite)."""
        current = await self._current.get_membership(room_id, requester.user_id)
        if current is not None and current.membership in (JOIN, INVITE, KNOCK):
            raise MatrixError(400, "You must leave the room before forgetting it", Codes.UNKNOWN)
        if current is None and await self._rooms.get_room(room_id) is None:
            raise NotFoundError("Unknown room")
        await self._forgotten.forget(requester.user_id, room_id)
