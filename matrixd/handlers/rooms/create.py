"""``/createRoom``: lay out the initial events (see creation_plan) and send each through the auth rules.

Invites of users on other servers are not part of the initial chain: a remote
user's invite must go through their server (the federation invite handshake,
which also tells them about it), so once the room exists they are invited like
any ``/invite`` through :class:`RemoteInviter` (the membership handler).  A
refused or failed remote invite does not undo the room; it is logged.
"""

from __future__ import annotations

import logging
import random
import string
from typing import Any, Mapping, Optional, Protocol

import attrs

from matrixd.api.errors import AuthError, Codes, MatrixError
from matrixd.events.event import Event, StateKey
from matrixd.events.room_versions import RoomVersion, get_room_version
from matrixd.handlers.events.creation import EventCreationHandler, EventSpec, invalid_room_state_error
from matrixd.handlers.rooms.creation_plan import PlannedEvent, RoomCreationPlan, plan_room_creation
from matrixd.storage.aliases import AliasStore
from matrixd.storage.profiles import ProfileStore
from matrixd.storage.rooms import RoomStore
from matrixd.types import JsonDict, Requester, get_domain_from_id

logger = logging.getLogger(__name__)

_rng = random.SystemRandom()
MAX_ROOM_ID_ATTEMPTS = 100


def random_room_id(server_name: str) -> str:
    return "!" + "".join(_rng.choices(string.ascii_letters, k=18)) + ":" + server_name


class RemoteInviter(Protocol):
    async def update_membership(self, requester: Requester, target: str, room_id: str, action: str, *,
                                extra_content: Optional[JsonDict] = None) -> str: ...


class RoomCreationHandler:
    def __init__(
        self,
        *,
        server_name: str,
        default_room_version: RoomVersion,
        rooms: RoomStore,
        aliases: AliasStore,
        profiles: ProfileStore,
        creation: EventCreationHandler,
    ) -> None:
        self._server_name = server_name
        self._default_room_version = default_room_version
        self._rooms = rooms
        self._aliases = aliases
        self._profiles = profiles
        self._creation = creation
        self._inviter: Optional[RemoteInviter] = None

    def set_remote_inviter(self, inviter: RemoteInviter) -> None:
        """Who invites the users of other servers named in ``invite`` once the room exists."""
        self._inviter = inviter

    async def create_room(self, requester: Requester, body: Mapping[str, Any],
                          room_version: Optional[RoomVersion] = None) -> str:
        """Create a room as ``requester`` and return its id."""
        if room_version is None:
            requested = body.get("room_version")
            room_version = get_room_version(requested) if requested is not None else self._default_room_version
        creator = requester.user_id
        plan = plan_room_creation(room_version, creator, body, self._server_name)
        remote_invites: list[PlannedEvent] = []
        if self._inviter is not None:
            remote_invites = [e for e in plan.events if e.event_type == "m.room.member" and e.state_key != creator
                              and e.state_key is not None and get_domain_from_id(e.state_key) != self._server_name]
            plan = attrs.evolve(plan, events=tuple(e for e in plan.events if e not in remote_invites))
        if requester.shadow_banned and plan.invitees:
            # A shadow-banned user's room with invites is never created; the answer looks normal.
            return random_room_id(self._server_name)

        alias: Optional[str] = None
        for planned in plan.events:
            if planned.event_type == "m.room.canonical_alias":
                alias = planned.content["alias"]
        if alias is not None and await self._aliases.get_alias(alias) is not None:
            raise MatrixError(400, f"Room alias {alias} already taken", Codes.ROOM_IN_USE)

        # Build and auth-check the whole chain in memory first, so a request whose
        # initial state the auth rules refuse changes nothing.  Then reserve the
        # room id; in v12+ it is the create event's hash, so an identical request
        # in the same millisecond collides and is rebuilt one millisecond later.
        for attempt in range(MAX_ROOM_ID_ATTEMPTS):
            create_event = self._creation.build_create_event(
                room_version, creator, plan.create_content,
                None if room_version.room_id_is_create_event_hash else random_room_id(self._server_name),
                ts_offset_ms=attempt,
            )
            room_id = create_event.room_id
            chain = await self._build_chain(room_version, room_id, creator, create_event, plan)
            if await self._rooms.store_room(room_id, room_version.identifier, creator, False):
                break
        else:
            raise MatrixError(500, "Could not allocate a room id", Codes.UNKNOWN)

        # A shadow-banned user's room is real but reaches nobody else: it is not published in the
        # directory and its alias is not registered (the alias stays free; only its own state names it).
        if plan.visibility == "public" and not requester.shadow_banned:
            await self._rooms.set_room_is_public(room_id, True)
        if requester.shadow_banned:
            alias = None
        async with self._creation.room_lock.queue(room_id):
            if alias is not None and not await self._aliases.create_alias(alias, room_id, creator):
                raise MatrixError(400, f"Room alias {alias} already taken", Codes.ROOM_IN_USE)
            persisted = await self._creation.persist_create_event(create_event)
            group = persisted.state_group
            for event, state_before in chain:
                persisted = await self._creation.persister.persist_new_event(event, state_before, group)
                group = persisted.state_group
        await self._creation.persister.wait_announced(persisted.stream_ordering)
        for invite in remote_invites:
            assert self._inviter is not None and invite.state_key is not None
            extra = {k: v for k, v in invite.content.items() if k != "membership"}
            try:
                await self._inviter.update_membership(requester, invite.state_key, room_id, "invite",
                                                      extra_content=extra or None)
            except Exception as e:
                logger.warning("createRoom %s: inviting %s failed: %s", room_id, invite.state_key, e)
        return room_id

    async def _build_chain(self, room_version: RoomVersion, room_id: str, creator: str, create_event: Event,
                           plan: RoomCreationPlan) -> list[tuple[Event, dict[StateKey, str]]]:
        """The room's initial events after the create event, each with the state before it."""
        chain: list[tuple[Event, dict[StateKey, str]]] = []
        state_events: dict[StateKey, Event] = {("m.room.create", ""): create_event}
        prev = create_event
        for planned in plan.events:
            content = dict(planned.content)
            if planned.event_type == "m.room.member" and planned.state_key == creator:
                await self._add_profile(creator, content)
            try:
                event = self._creation.build_on(
                    room_version, room_id, EventSpec(planned.event_type, creator, content, planned.state_key),
                    [prev], state_events,
                )
            except AuthError as e:
                raise invalid_room_state_error(e) from e
            chain.append((event, {k: ev.event_id for k, ev in state_events.items()}))
            if event.is_state():
                state_events[event.state_key_tuple()] = event
            prev = event
        return chain

    async def _add_profile(self, user_id: str, content: dict[str, Any]) -> None:
        profile = await self._profiles.get_profile(user_id)
        if profile is not None:
            if profile[0] is not None:
                content["displayname"] = profile[0]
            if profile[1] is not None:
                content["avatar_url"] = profile[1]
