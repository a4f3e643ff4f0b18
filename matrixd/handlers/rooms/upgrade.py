"""``POST /rooms/{roomId}/upgrade``: replace a room by a new one of another room version.

Following the room upgrades module:

1. the user must be joined and allowed to send ``m.room.tombstone``;
2. the new room's create event names the old room (``predecessor``: room id
   and the old room's latest event) and copies its ``type`` (and
   ``m.federate``); ``additional_creators`` come only from the request;
3. transferable state is copied: power levels, join rules, history
   visibility, guest access, name, topic, avatar, encryption, server ACLs,
   canonical alias, space parents/children, and bans.  While copying, the
   upgrader's power in the new room is raised so every copy passes the auth
   rules, then the old power levels are restored (creators of v12+ rooms are
   never listed in ``users``);
4. local aliases move to the new room, and so does the directory listing;
5. the old room gets an ``m.room.tombstone`` pointing at the new one, and its
   power levels are raised (``events_default`` and ``invite`` to at least
   ``max(50, users_default + 1)``) so ordinary members stop talking there.

Steps after the tombstone are best effort: a refusal there does not undo the
upgrade.  Upgrades of one room are serialised.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Sequence

from matrixd.api.errors import AuthError, Codes, MatrixError, NotFoundError
from matrixd.events.event import Event, JsonDict, StateKey
from matrixd.events.room_versions import RoomVersion, get_room_version
from matrixd.handlers.events.creation import EventCreationHandler, EventSpec
from matrixd.handlers.rooms.create import MAX_ROOM_ID_ATTEMPTS, random_room_id
from matrixd.handlers.rooms.creation_plan import default_power_levels
from matrixd.state.auth import can_send_event, get_room_creators, get_user_power_level, parse_level
from matrixd.storage.aliases import AliasStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.profiles import ProfileStore
from matrixd.storage.rooms import RoomStore
from matrixd.types import Requester, UserID
from matrixd.util.linearizer import Linearizer

logger = logging.getLogger(__name__)

POWER_LEVELS = ("m.room.power_levels", "")
CREATE = ("m.room.create", "")
#: Copied (state key "") in this order, after the power levels.
COPIED_STATE_TYPES = (
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
    "m.room.canonical_alias",
)
#: Copied with every state key.
COPIED_KEYED_TYPES = ("m.space.parent", "m.space.child")
_NAMED_LEVELS = ("ban", "kick", "redact", "invite", "events_default", "state_default", "users_default")


def normalize_power_levels(old_version: RoomVersion, content: Mapping[str, Any]) -> JsonDict:
    """Power levels with every level an integer (older rooms allow strings and floats)."""
    out: JsonDict = dict(content)
    for name in _NAMED_LEVELS:
        if name in out:
            level = parse_level(old_version, out[name])
            if level is None:
                del out[name]
            else:
                out[name] = level
    for name in ("users", "events", "notifications"):
        mapping = out.get(name)
        if isinstance(mapping, dict):
            out[name] = {k: lv for k, v in mapping.items() if (lv := parse_level(old_version, v)) is not None}
        elif name in out:
            del out[name]
    return out


def restrict_power_levels(old_version: RoomVersion, content: Mapping[str, Any]) -> Optional[JsonDict]:
    """The old room's power levels with talking and inviting raised; None if they already are."""
    users_default = parse_level(old_version, content.get("users_default", 0)) or 0
    needed = max(50, users_default + 1)
    out: JsonDict = dict(content)
    changed = False
    for name, default in (("events_default", 0), ("invite", 0)):
        current = parse_level(old_version, out.get(name, default))
        if current is None or current < needed:
            out[name] = needed
            changed = True
    return out if changed else None


class RoomUpgradeHandler:
    def __init__(
        self,
        *,
        server_name: str,
        rooms: RoomStore,
        aliases: AliasStore,
        events: EventStore,
        current_state: CurrentStateStore,
        profiles: ProfileStore,
        creation: EventCreationHandler,
    ) -> None:
        self._server_name = server_name
        self._rooms = rooms
        self._aliases = aliases
        self._events = events
        self._current = current_state
        self._profiles = profiles
        self._creation = creation
        self._lock = Linearizer("room_upgrade")

    async def upgrade_room(
        self, requester: Requester, room_id: str, new_version_id: object,
        additional_creators: Optional[Sequence[str]] = None,
    ) -> str:
        """Upgrade ``room_id`` to ``new_version_id``; returns the replacement room's id."""
        new_version = get_room_version(new_version_id)
        if additional_creators is not None and not all(
            isinstance(u, str) and UserID.is_valid(u) for u in additional_creators
        ):
            raise MatrixError(400, "additional_creators must be a list of user ids", Codes.INVALID_PARAM)
        if await self._rooms.get_room(room_id) is None:
            raise NotFoundError("Unknown room")
        user_id = requester.user_id
        async with self._lock.queue(room_id):
            old_version = await self._rooms.get_room_version(room_id)
            state = await self._old_state(room_id)
            membership = state.get(("m.room.member", user_id))
            if membership is None or membership.membership != "join":
                raise AuthError(403, "You must be joined to the room to upgrade it")
            if not can_send_event(old_version, user_id, "m.room.tombstone", True, state):
                raise AuthError(403, "You do not have the power to upgrade this room")

            new_room_id = await self._create_replacement(
                requester, room_id, old_version, new_version, state, list(additional_creators or ())
            )
            await self._aliases.move_aliases(room_id, new_room_id)
            old_room = await self._rooms.get_room(room_id)
            if old_room is not None and old_room.is_public:
                await self._rooms.set_room_is_public(new_room_id, True)
                await self._rooms.set_room_is_public(room_id, False)

            await self._creation.send(room_id, EventSpec(
                "m.room.tombstone", user_id,
                {"body": "This room has been replaced", "replacement_room": new_room_id}, "",
            ))
            await self._wind_down_old_room(user_id, room_id, old_version, state)
        return new_room_id

    async def _old_state(self, room_id: str) -> dict[StateKey, Event]:
        """The old room's state events the upgrade reads or copies (members only for bans and the user)."""
        state_ids = await self._current.get_current_state_ids(room_id)
        wanted = {
            key: eid for key, eid in state_ids.items()
            if key[1] == "" or key[0] in COPIED_KEYED_TYPES or key[0] == "m.room.member"
        }
        events = await self._events.get_events(wanted.values())
        return {key: events[eid] for key, eid in wanted.items() if eid in events}

    async def _create_replacement(
        self,
        requester: Requester,
        old_room_id: str,
        old_version: RoomVersion,
        new_version: RoomVersion,
        state: Mapping[StateKey, Event],
        additional_creators: list[str],
    ) -> str:
        user_id = requester.user_id
        latest = await self._events.get_room_events_stream(old_room_id, None, None, 1, "b")
        predecessor: JsonDict = {"room_id": old_room_id}
        if latest:
            predecessor["event_id"] = latest[0].event_id
        old_create = state.get(CREATE)
        create_content: JsonDict = {"room_version": new_version.identifier, "predecessor": predecessor}
        if old_create is not None:
            for key in ("type", "m.federate"):
                if key in old_create.content:
                    create_content[key] = old_create.content[key]
        if not new_version.implicit_room_creator:
            create_content["creator"] = user_id
        extra_creators = [u for u in dict.fromkeys(additional_creators) if u != user_id]
        if new_version.privileged_creators and extra_creators:
            create_content["additional_creators"] = extra_creators

        create_event: Optional[Event] = None
        for attempt in range(MAX_ROOM_ID_ATTEMPTS):
            create_event = self._creation.build_create_event(
                new_version, user_id, create_content,
                None if new_version.room_id_is_create_event_hash else random_room_id(self._server_name),
                ts_offset_ms=attempt,
            )
            if await self._rooms.store_room(create_event.room_id, new_version.identifier, user_id, False):
                break
        else:
            raise MatrixError(500, "Could not allocate a room id", Codes.UNKNOWN)
        assert create_event is not None
        new_room_id = create_event.room_id
        async with self._creation.room_lock.queue(new_room_id):
            await self._creation.persist_create_event(create_event)

        join_content: JsonDict = {"membership": "join"}
        profile = await self._profiles.get_profile(user_id)
        if profile is not None:
            if profile[0] is not None:
                join_content["displayname"] = profile[0]
            if profile[1] is not None:
                join_content["avatar_url"] = profile[1]
        await self._send(new_room_id, EventSpec("m.room.member", user_id, join_content, user_id), required=True)

        creators = get_room_creators(new_version, create_event)
        final_pl = self._final_power_levels(user_id, old_version, new_version, state, creators)
        working_pl = dict(final_pl)
        if not new_version.privileged_creators:
            working_pl["users"] = {**final_pl.get("users", {}), user_id: _highest_level(final_pl)}
        await self._send(new_room_id, EventSpec("m.room.power_levels", user_id, working_pl, ""), required=True)

        for event_type in COPIED_STATE_TYPES:
            event = state.get((event_type, ""))
            if event is not None and event.content:
                await self._send(new_room_id, EventSpec(event_type, user_id, dict(event.content), ""))
        for (event_type, state_key), event in sorted(state.items(), key=lambda kv: kv[0]):
            if event_type in COPIED_KEYED_TYPES and event.content:
                await self._send(new_room_id, EventSpec(event_type, user_id, dict(event.content), state_key))
            elif event_type == "m.room.member" and event.membership == "ban" and state_key not in creators:
                ban: JsonDict = {"membership": "ban"}
                if isinstance(event.content.get("reason"), str):
                    ban["reason"] = event.content["reason"]
                await self._send(new_room_id, EventSpec("m.room.member", user_id, ban, state_key))
        if working_pl != final_pl:
            await self._send(new_room_id, EventSpec("m.room.power_levels", user_id, final_pl, ""), required=True)
        return new_room_id

    def _final_power_levels(
        self, user_id: str, old_version: RoomVersion, new_version: RoomVersion,
        state: Mapping[StateKey, Event], creators: set[str],
    ) -> JsonDict:
        """The new room's lasting power levels: the old ones, made valid for the new version."""
        old_pl = state.get(POWER_LEVELS)
        if old_pl is None:
            return default_power_levels(new_version, user_id, "private_chat", [])
        content = normalize_power_levels(old_version, old_pl.content)
        users = dict(content.get("users", {}))
        if new_version.privileged_creators:
            for creator in creators:
                users.pop(creator, None)
        else:
            old_level = get_user_power_level(old_version, user_id, state)
            users[user_id] = int(min(max(old_level, users.get(user_id, 0)), _highest_level(content)))
        content["users"] = users
        return content

    async def _send(self, room_id: str, spec: EventSpec, *, required: bool = False) -> None:
        try:
            await self._creation.send(room_id, spec)
        except MatrixError as e:
            if required:
                raise
            logger.warning("room upgrade: not copying %s/%r into %s: %s", spec.event_type, spec.state_key,
                           room_id, e.msg)

    async def _wind_down_old_room(
        self, user_id: str, room_id: str, old_version: RoomVersion, state: Mapping[StateKey, Event]
    ) -> None:
        """Best effort: stop ordinary members talking in the old room and drop its canonical alias."""
        old_pl = state.get(POWER_LEVELS)
        if old_pl is not None:
            restricted = restrict_power_levels(old_version, old_pl.content)
            if restricted is not None:
                await self._send(room_id, EventSpec("m.room.power_levels", user_id, restricted, ""))
        alias_event = state.get(("m.room.canonical_alias", ""))
        if alias_event is not None and alias_event.content:
            await self._send(room_id, EventSpec("m.room.canonical_alias", user_id, {}, ""))


def _highest_level(content: Mapping[str, Any]) -> int:
    """The largest level a power levels content requires for anything (at least 100)."""
    levels = [100]
    for name in _NAMED_LEVELS:
        if isinstance(content.get(name), int):
            levels.append(content[name])
    for name in ("events", "notifications"):
        mapping = content.get(name)
        if isinstance(mapping, dict):
            levels.extend(v for v in mapping.values() if isinstance(v, int))
    return max(levels)
