"""Answers to other servers' queries: our users' devices and keys, OpenID userinfo, space hierarchies.

Key answers reuse the e2e area's ``E2EKeysHandler`` on our own users only
(asked as an anonymous viewer, so nothing a user shows only to itself, such as
its user-signing key, leaves the server).
"""

from __future__ import annotations

import secrets
from matrixd.api.errors import AuthError, Codes, MatrixError, NotFoundError
from matrixd.federation.visibility import ServerVisibility, domain_or_none
from matrixd.handlers.e2e.keys import E2EKeysHandler
from matrixd.handlers.rooms.space_summary import JOINABLE_RULES, SpaceRoomSummaries
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.federation_sender import FederationSenderStore, OpenIdTokenStore
from matrixd.storage.rooms import RoomStore
from matrixd.types import JsonDict, Requester
from matrixd.util.clock import Clock

#: The viewer of federation key queries: matches no user.
_NOBODY = Requester(user_id="", device_id=None, access_token_id=None)


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
        self._visibility = visibility
        self._summaries = SpaceRoomSummaries(rooms=rooms, events=events, current_state=current_state)

    async def get_hierarchy(self, origin: str, room_id: str, suggested_only: bool) -> JsonDict:
        if await self._rooms.get_room(room_id) is None or not await self._accessible(origin, room_id):
            raise NotFoundError("Unknown room")
        room = await self._summaries.summary(room_id, suggested_only=suggested_only)
        children: list[JsonDict] = []
        inaccessible: list[str] = []
        for child in room["children_state"]:
            child_id = child["state_key"]
            if not await self._summaries.is_known(child_id):
                continue  # we cannot describe it: left out, as the spec asks
            if await self._accessible(origin, child_id):
                children.append(await self._summaries.summary(child_id))
            else:
                inaccessible.append(child_id)
        return {"room": room, "children": children, "inaccessible_children": inaccessible}

    async def _accessible(self, origin: str, room_id: str) -> bool:
        """Whether ``origin`` could peek or join: world-readable, a joinable rule, or already in the room."""
        if await self._summaries.is_world_readable(room_id):
            return True
        return (await self._summaries.join_rule(room_id) in JOINABLE_RULES
                or await self._visibility.is_host_in_room(origin, room_id))
