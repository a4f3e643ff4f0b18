"""Room aliases: resolving, creating and deleting ``#alias:server`` mappings, listing a room's.

This server is authoritative for aliases on its own domain only.  Remote
aliases resolve through an optional :class:`RemoteAliasResolver` (the
federation query); without one they are 404.

Permissions (the spec leaves them to servers):
* creating: the user must be joined to the room (or be a server admin);
* deleting: the alias's creator, a server admin, or a user whose power level
  allows changing the room's ``m.room.canonical_alias``; the canonical alias
  event is then updated, if the user may, to stop advertising the alias;
* listing a room's aliases: its members, anyone if it is world_readable, admins.
"""

from __future__ import annotations

from typing import Optional, Protocol

import attrs

from matrixd.api.errors import AuthError, Codes, MatrixError, NotFoundError
from matrixd.events.event import Event, JsonDict
from matrixd.handlers.rooms.access import RoomAccessChecker
from matrixd.handlers.rooms.send import EventSendHandler
from matrixd.handlers.rooms.state import CANONICAL_ALIAS, parse_room_alias
from matrixd.state.auth import can_send_event
from matrixd.storage.accounts import UserStore
from matrixd.storage.aliases import AliasStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.rooms import RoomStore
from matrixd.types import Requester, get_domain_from_id, is_valid_room_id


@attrs.frozen(slots=True)
class AliasTarget:
    room_id: str
    servers: tuple[str, ...]


class RemoteAliasResolver(Protocol):
    """Asks an alias's own server what it points at (federation ``/query/directory``)."""

    async def resolve_remote_alias(self, alias: str) -> Optional[AliasTarget]: ...


class AppServiceAliases(Protocol):
    """Application services' alias namespaces (``matrixd.appservice``)."""

    async def query_alias(self, alias: str) -> bool:
        """Ask the services covering an unknown local alias; True if one created it."""
        ...

    def is_alias_reserved(self, alias: str, app_service_id: Optional[str]) -> bool:
        """True if ``alias`` is in another service's exclusive namespace (or any, for a normal user)."""
        ...

    def on_aliases_changed(self, room_id: str) -> None:
        """A room's directory aliases changed (services' interest in the room may have)."""
        ...


class RoomAliasHandler:
    def __init__(
        self,
        *,
        server_name: str,
        aliases: AliasStore,
        rooms: RoomStore,
        current_state: CurrentStateStore,
        users: UserStore,
        access: RoomAccessChecker,
        send: EventSendHandler,
        remote_resolver: Optional[RemoteAliasResolver] = None,
    ) -> None:
        self._server_name = server_name
        self._aliases = aliases
        self._rooms = rooms
        self._current = current_state
        self._users = users
        self._access = access
        self._send = send
        self._remote = remote_resolver
        self._app_services: Optional[AppServiceAliases] = None

    def set_app_services(self, app_services: AppServiceAliases) -> None:
        """Wired by the application service area: alias queries and exclusive alias namespaces."""
        self._app_services = app_services

    def set_remote_resolver(self, resolver: RemoteAliasResolver) -> None:
        """Resolve other servers' aliases through ``resolver`` (wired once federation exists)."""
        self._remote = resolver

    async def _is_admin(self, user_id: str) -> bool:
        info = await self._users.get_user(user_id)
        return info is not None and info.admin

    async def resolve(self, alias: str) -> AliasTarget:
        """The room an alias points at and servers to join it through; 404 ``M_NOT_FOUND`` if unmapped."""
        parsed = parse_room_alias(alias)
        if parsed.domain != self._server_name:
            target = await self._remote.resolve_remote_alias(parsed.to_string()) if self._remote else None
            if target is None:
                raise NotFoundError(f"Room alias {parsed} not found")
            return target
        mapping = await self._aliases.get_alias(parsed.to_string())
        if mapping is None and self._app_services is not None \
                and await self._app_services.query_alias(parsed.to_string()):
            # A service created the room (and the alias) while answering: look again.
            mapping = await self._aliases.get_alias(parsed.to_string())
        if mapping is None:
            raise NotFoundError(f"Room alias {parsed} not found")
        room_id = mapping[0]
        servers = {get_domain_from_id(u) for u in await self._current.get_users_in_room(room_id)}
        servers.discard(self._server_name)
        return AliasTarget(room_id, (self._server_name, *sorted(servers)))

    async def create_alias(self, requester: Requester, alias: str, room_id: object) -> None:
        """Map a local alias to a room the requester is in; 409 if it is taken."""
        parsed = parse_room_alias(alias)
        if parsed.domain != self._server_name:
            raise MatrixError(400, "Room aliases can only be created on this server's domain", Codes.INVALID_PARAM)
        if not isinstance(room_id, str) or not is_valid_room_id(room_id):
            raise MatrixError(400, "room_id must be a room id", Codes.INVALID_PARAM)
        if self._app_services is not None and \
                self._app_services.is_alias_reserved(parsed.to_string(), requester.app_service_id):
            raise MatrixError(400, "This alias is reserved by an application service", Codes.EXCLUSIVE)
        if await self._rooms.get_room(room_id) is None:
            raise NotFoundError("Room not found")
        if not await self._is_admin(requester.user_id):
            await self._access.check_joined(requester.user_id, room_id)
        if requester.shadow_banned:
            # Answered like a real creation (a taken alias is still 409), but nothing is stored:
            # the alias stays free and nobody else can be led to the room through it.
            if await self._aliases.get_alias(parsed.to_string()) is not None:
                raise MatrixError(409, f"Room alias {parsed} already exists", Codes.UNKNOWN)
            return
        if not await self._aliases.create_alias(parsed.to_string(), room_id, requester.user_id):
            raise MatrixError(409, f"Room alias {parsed} already exists", Codes.UNKNOWN)
        if self._app_services is not None:
            self._app_services.on_aliases_changed(room_id)

    async def delete_alias(self, requester: Requester, alias: str) -> None:
        """Remove a local alias the requester may remove; 404 if it does not exist."""
        parsed = parse_room_alias(alias)
        if parsed.domain != self._server_name:
            raise MatrixError(400, "Room aliases can only be deleted on this server's domain", Codes.INVALID_PARAM)
        name = parsed.to_string()
        mapping = await self._aliases.get_alias(name)
        if mapping is None:
            raise NotFoundError(f"Room alias {name} not found")
        room_id, creator = mapping
        can_edit_canonical = await self._can_edit_canonical_alias(requester.user_id, room_id)
        if creator != requester.user_id and not can_edit_canonical and not await self._is_admin(requester.user_id):
            raise AuthError(403, "You may not delete this alias")
        if await self._aliases.delete_alias(name) is None:
            raise NotFoundError(f"Room alias {name} not found")
        if self._app_services is not None:
            self._app_services.on_aliases_changed(room_id)
        if can_edit_canonical:
            await self._drop_from_canonical_alias(requester, room_id, name)

    async def _can_edit_canonical_alias(self, user_id: str, room_id: str) -> bool:
        membership = await self._current.get_membership(room_id, user_id)
        if membership is None or membership.membership != "join":
            return False
        room_version = await self._rooms.get_room_version(room_id)
        auth_state: dict[tuple[str, str], Event] = {}
        for key in (("m.room.create", ""), ("m.room.power_levels", "")):
            event = await self._current.get_current_state_event(room_id, *key)
            if event is not None:
                auth_state[key] = event
        return can_send_event(room_version, user_id, CANONICAL_ALIAS, True, auth_state)

    async def _drop_from_canonical_alias(self, requester: Requester, room_id: str, alias: str) -> None:
        """Stop the room's canonical alias event advertising a deleted alias."""
        event = await self._current.get_current_state_event(room_id, CANONICAL_ALIAS, "")
        if event is None:
            return
        content: JsonDict = dict(event.content)
        changed = False
        if content.get("alias") == alias:
            del content["alias"]
            changed = True
        alt = content.get("alt_aliases")
        if isinstance(alt, list) and alias in alt:
            content["alt_aliases"] = [a for a in alt if a != alias]
            changed = True
        if changed:
            await self._send.send_event(requester, room_id, CANONICAL_ALIAS, content, state_key="")

    async def get_room_aliases(self, requester: Requester, room_id: str) -> list[str]:
        """The local aliases of a room, for its members (anyone if world_readable, admins)."""
        if not await self._is_admin(requester.user_id):
            await self._access.check_can_read(requester.user_id, room_id, allow_departed=False)
        return await self._aliases.get_aliases_for_room(room_id)
