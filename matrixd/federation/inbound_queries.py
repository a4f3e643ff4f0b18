"""Answers to other servers' queries: our users' devices and keys, OpenID userinfo, space hierarchies.

Key answers reuse the e2e area's ``E2EKeysHandler`` on our own users only
(asked as an anonymous viewer, so nothing a user shows only to itself, such as
its user-signing key, leaves the server).
"""

from __future__ import annotations

import secrets
from typing import Any, Optional

from matrixd.api.errors import AuthError, Codes, MatrixError, NotFoundError
from matrixd.events.event import Event
from matrixd.federation.visibility import ServerVisibility, domain_or_none
from matrixd.handlers.e2e.keys import E2EKeysHandler
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.federation_sender import FederationSenderStore, OpenIdTokenStore
from matrixd.storage.rooms import RoomStore
from matrixd.types import JsonDict, Requester
from matrixd.util.clock import Clock

#: The viewer of federation key queries: matches no user.
_NOBODY = Requester(user_id="", device_id=None, access_token_id=None)
SPACE_CHILD = "m.space.child"
_JOINABLE_RULES = frozenset({"public", "knock", "knock_restricted"})


def _bad(msg: str) -> MatrixError:
    return MatrixError(400, msg, Codes.INVALID_PARAM)


class FederationKeyQueries:
    def __init__(self, *, server_name: str, keys: E2EKeysHandler, store: FederationSenderStore) -> None:
        self._server_name = server_name
        self._keys = keys
        self._store = store

    def _require_local(self, user_id: str) -> None:
        if domain_or_none(user_id) != self._server_name:
            raise _bad(f"{user_id} is not a user of this server")

    async def get_user_devices(self, user_id: str) -> JsonDict:
        """``GET /user/devices/{userId}``: every device with its keys, and the cross-signing keys."""
        self._require_local(user_id)
        answer = await self._keys.query_keys(_NOBODY, {"device_keys": {user_id: []}})
        devices = []
        for device_id, keys in sorted(answer["device_keys"].get(user_id, {}).items()):
            entry: JsonDict = {"device_id": device_id, "keys": {k: v for k, v in keys.items() if k != "unsigned"}}
            name = keys.get("unsigned", {}).get("device_display_name")
            if name is not None:
                entry["device_display_name"] = name
            devices.append(entry)
        result: JsonDict = {
            "user_id": user_id,
            "stream_id": await self._store.get_latest_device_list_stream_id(user_id),
            "devices": devices,
        }
        if user_id in answer["master_keys"]:
            result["master_key"] = answer["master_keys"][user_id]
        if user_id in answer["self_signing_keys"]:
            result["self_signing_key"] = answer["self_signing_keys"][user_id]
        return result

    async def query_keys(self, body: JsonDict) -> JsonDict:
        """``POST /user/keys/query`` for our users (others are left out of the answer)."""
        wanted = body.get("device_keys")
        if not isinstance(wanted, dict):
            raise MatrixError(400, "device_keys must be an object", Codes.BAD_JSON)
        local = {u: d for u, d in wanted.items() if isinstance(u, str) and domain_or_none(u) == self._server_name}
        answer = await self._keys.query_keys(_NOBODY, {"device_keys": local})
        return {k: answer[k] for k in ("device_keys", "master_keys", "self_signing_keys")}

    async def claim_keys(self, body: JsonDict) -> JsonDict:
        """``POST /user/keys/claim`` for our users' devices."""
        wanted = body.get("one_time_keys")
        if not isinstance(wanted, dict):
            raise MatrixError(400, "one_time_keys must be an object", Codes.BAD_JSON)
        local = {u: d for u, d in wanted.items() if isinstance(u, str) and domain_or_none(u) == self._server_name}
        answer = await self._keys.claim_keys(_NOBODY, {"one_time_keys": local})
        return {"one_time_keys": answer["one_time_keys"]}


#: How long an OpenID token is valid (the spec's example, and what clients expect).
OPENID_TOKEN_LIFETIME_S = 3600


class OpenIdTokens:
    """OpenID tokens: issued to a local user (client API), resolved for other servers (federation)."""

    def __init__(self, *, server_name: str, clock: Clock, tokens: OpenIdTokenStore) -> None:
        self._server_name = server_name
        self._clock = clock
        self._tokens = tokens

    async def issue(self, requester: Requester, user_id: str) -> JsonDict:
        """``POST /user/{userId}/openid/request_token``: only for the requester itself."""
        if requester.user_id != user_id:
            raise AuthError(403, "You may only request OpenID tokens for yourself")
        token = secrets.token_urlsafe(32)
        await self._tokens.add_token(token, user_id, self._clock.time_msec() + OPENID_TOKEN_LIFETIME_S * 1000)
        return {"access_token": token, "token_type": "Bearer", "matrix_server_name": self._server_name,
                "expires_in": OPENID_TOKEN_LIFETIME_S}

    async def get_userinfo(self, access_token: str) -> JsonDict:
        """``GET /openid/userinfo``: who a still-valid token was issued to."""
        user_id = await self._tokens.get_user_for_token(access_token)
        if user_id is None:
            raise MatrixError(401, "Unknown or expired OpenID token", Codes.UNKNOWN_TOKEN)
        return {"sub": user_id}


class SpaceHierarchy:
    """``GET /hierarchy/{roomId}``: the space and those of its children we know and the origin may see."""

    def __init__(self, *, rooms: RoomStore, events: EventStore, current_state: CurrentStateStore,
                 visibility: ServerVisibility) -> None:
        self._rooms = rooms
        self._events = events
        self._current = current_state
        self._visibility = visibility

    async def get_hierarchy(self, origin: str, room_id: str, suggested_only: bool) -> JsonDict:
        if await self._rooms.get_room(room_id) is None or not await self._accessible(origin, room_id):
            raise NotFoundError("Unknown room")
        children_state = await self._children_state(room_id, suggested_only)
        room = await self._summary(room_id)
        room["children_state"] = [_stripped(e) for e in children_state]
        children: list[JsonDict] = []
        inaccessible: list[str] = []
        for event in children_state:
            child_id = event.state_key
            assert child_id is not None
            if await self._rooms.get_room(child_id) is None or not await self._current.get_users_in_room(child_id):
                continue  # we cannot describe it: left out, as the spec asks
            if await self._accessible(origin, child_id):
                summary = await self._summary(child_id)
                summary["children_state"] = [_stripped(e) for e in await self._children_state(child_id, False)]
                children.append(summary)
            else:
                inaccessible.append(child_id)
        return {"room": room, "children": children, "inaccessible_children": inaccessible}

    async def _state_content(self, room_id: str, event_type: str) -> JsonDict:
        event = await self._current.get_current_state_event(room_id, event_type, "")
        return dict(event.content) if event is not None else {}

    async def _accessible(self, origin: str, room_id: str) -> bool:
        """Whether ``origin`` could peek or join: world-readable, a joinable rule, or already in the room."""
        if await self._visibility.is_room_world_readable(room_id):
            return True
        join_rule = (await self._state_content(room_id, "m.room.join_rules")).get("join_rule")
        return join_rule in _JOINABLE_RULES or await self._visibility.is_host_in_room(origin, room_id)

    async def _children_state(self, room_id: str, suggested_only: bool) -> list[Event]:
        state = await self._current.get_current_state_ids(room_id)
        ids = [eid for (etype, _sk), eid in sorted(state.items()) if etype == SPACE_CHILD]
        found = await self._events.get_events(ids)
        out = []
        for eid in ids:
            event = found.get(eid)
            if event is None:
                continue
            via = event.content.get("via")
            if not isinstance(via, list) or not via or not all(isinstance(v, str) for v in via):
                continue  # no via: the child relation was removed
            if suggested_only and event.content.get("suggested") is not True:
                continue
            out.append(event)
        return out

    async def _summary(self, room_id: str) -> JsonDict:
        create = await self._state_content(room_id, "m.room.create")
        join_rules = await self._state_content(room_id, "m.room.join_rules")
        info = await self._rooms.get_room(room_id)
        summary: JsonDict = {
            "room_id": room_id,
            "num_joined_members": len(await self._current.get_users_in_room(room_id)),
            "world_readable": await self._visibility.is_room_world_readable(room_id),
            "guest_can_join": (await self._state_content(room_id, "m.room.guest_access")).get("guest_access")
            == "can_join",
            "join_rule": join_rules.get("join_rule", "invite"),
        }
        if info is not None:
            summary["room_version"] = info.room_version
        optional: list[tuple[str, str, str]] = [
            ("name", "m.room.name", "name"), ("topic", "m.room.topic", "topic"),
            ("avatar_url", "m.room.avatar", "url"), ("canonical_alias", "m.room.canonical_alias", "alias"),
            ("encryption", "m.room.encryption", "algorithm"),
        ]
        for field, event_type, key in optional:
            value: Any = (await self._state_content(room_id, event_type)).get(key)
            if isinstance(value, str) and value:
                summary[field] = value
        room_type: Optional[Any] = create.get("type")
        if isinstance(room_type, str):
            summary["room_type"] = room_type
        allow = join_rules.get("allow")
        if isinstance(allow, list):
            summary["allowed_room_ids"] = sorted({a["room_id"] for a in allow if isinstance(a, dict)
                                                  and a.get("type") == "m.room_membership"
                                                  and isinstance(a.get("room_id"), str)})
        return summary


def _stripped(event: Event) -> JsonDict:
    return {"type": event.type, "state_key": event.state_key, "content": dict(event.content), "sender": event.sender,
            "origin_server_ts": event.origin_server_ts}
