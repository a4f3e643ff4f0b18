"""``/createRoom``: lay out the initial events (see creation_plan) and send each through the auth rules."""

from __future__ import annotations

import random
import string
from typing import Any, Mapping, Optional

from matrixd.api.errors import AuthError, Codes, MatrixError
from matrixd.events.event import Event, StateKey
from matrixd.events.room_versions import RoomVersion, get_room_version
from matrixd.handlers.events.creation import EventCreationHandler, EventSpec, invalid_room_state_error
from matrixd.handlers.rooms.creation_plan import RoomCreationPlan, plan_room_creation
from matrixd.storage.aliases import AliasStore
from matrixd.storage.profiles import ProfileStore
from matrixd.storage.rooms import RoomStore
from matrixd.types import Requester

_rng = random.SystemRandom()
MAX_ROOM_ID_ATTEMPTS = 100


def random_room_id(server_name: str) -> str:
    return "!" + "".join(_rng.choices(string.ascii_letters, k=18)) + ":" + server_name


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

    async def create_room(self, requester: Requester, body: Mapping[str, Any],
                          room_version: Optional[RoomVersion] = None) -> str:
        """Create a room as ``requester`` and return its id."""
        if room_version is None:
            requested = body.get("room_version")
            room_version = get_room_version(requested) if requested is not None else self._default_room_version
        creator = requester.user_id
        plan = plan_room_creation(room_version, creator, body, self._server_name)
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

        if plan.visibility == "public":
            await self._rooms.set_room_is_public(room_id, True)
        async with self._creation.room_lock.queue(room_id):
            if alias is not None and not await self._aliases.create_alias(alias, room_id, creator):
                raise MatrixError(400, f"Room alias {alias} already taken", Codes.ROOM_IN_USE)
            persisted = await self._creation.persist_create_event(create_event)
            group = persisted.state_group
            for event, state_before in chain:
                persisted = await self._creation.persister.persist_new_event(event, state_before, group)
                group = persisted.state_group
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
