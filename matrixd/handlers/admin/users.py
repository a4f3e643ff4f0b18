"""Server administration of local users: listing, creating/modifying,
deactivating, passwords, admin flag, shadow bans, rate-limit overrides,
devices, rooms, media and "login as" (puppet) tokens.

Account effects go through the accounts area (``AccountHandler.deactivate_user``,
``SessionHandler``, ``PasswordHasher``, ``DeviceHandler``) so admin actions and
a user's own actions behave the same.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from matrixd.api.errors import Codes, MatrixError, NotFoundError
from matrixd.handlers.accounts.account import AccountHandler
from matrixd.handlers.accounts.devices import DeviceHandler, device_to_json
from matrixd.handlers.accounts.passwords import PasswordHasher
from matrixd.handlers.accounts.profile import ProfileHandler
from matrixd.handlers.accounts.sessions import SessionHandler, new_access_token
from matrixd.handlers.ratelimit import RatelimitOverrides
from matrixd.storage.accounts import TokenStore, UserInfo, UserStore
from matrixd.storage.admin import USER_ORDER_COLUMNS, AdminStore, AdminUserRow
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.profiles import ProfileStore
from matrixd.types import JsonDict, Requester, UserID
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

USER_TYPES = (None, "bot", "support")


def _user_row_json(row: AdminUserRow) -> JsonDict:
    return {
        "name": row.name, "user_type": row.user_type, "is_guest": row.is_guest, "admin": row.admin,
        "deactivated": row.deactivated, "shadow_banned": row.shadow_banned, "locked": row.locked,
        "displayname": row.displayname, "avatar_url": row.avatar_url, "creation_ts": row.creation_ts,
    }


def _bool_field(body: JsonDict, name: str) -> Optional[bool]:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise MatrixError(400, f"'{name}' must be a boolean", Codes.BAD_JSON)
    return value


def _str_field(body: JsonDict, name: str, max_len: int = 1024) -> Optional[str]:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or len(value) > max_len):
        raise MatrixError(400, f"'{name}' must be a string of at most {max_len} characters", Codes.BAD_JSON)
    return value


class UserAdminHandler:
    def __init__(
        self, *, clock: Clock, server_name: str, store: AdminStore, users: UserStore, tokens: TokenStore,
        profiles: ProfileStore, current_state: CurrentStateStore, account: AccountHandler,
        sessions: SessionHandler, hasher: PasswordHasher, devices: DeviceHandler, profile: ProfileHandler,
        ratelimit_overrides: Optional[RatelimitOverrides] = None,
    ) -> None:
        self._overrides = ratelimit_overrides
        self._clock = clock
        self._server_name = server_name
        self._store = store
        self._users = users
        self._tokens = tokens
        self._profiles = profiles
        self._current = current_state
        self._account = account
        self._sessions = sessions
        self._hasher = hasher
        self._devices = devices
        self._profile = profile

    def check_local(self, user_id: str) -> None:
        """400 unless ``user_id`` is a well-formed id of this server."""
        if not UserID.is_valid(user_id):
            raise MatrixError(400, f"Invalid user id {user_id!r}", Codes.INVALID_PARAM)
        if UserID.from_string(user_id).domain != self._server_name:
            raise MatrixError(400, "Can only administer local users", Codes.INVALID_PARAM)

    async def get_existing(self, user_id: str) -> UserInfo:
        self.check_local(user_id)
        user = await self._users.get_user(user_id)
        if user is None:
            raise NotFoundError("User not found")
        return user

    async def list_users(self, *, start: int, limit: int, name: Optional[str], user_id: Optional[str],
                         guests: bool, deactivated: bool, order_by: str, direction: str) -> JsonDict:
        if order_by not in USER_ORDER_COLUMNS:
            raise MatrixError(400, f"Unknown order_by {order_by!r}", Codes.INVALID_PARAM)
        rows, total = await self._store.list_users(start=start, limit=limit, name=name, user_id=user_id,
                                                   guests=guests, deactivated=deactivated, order_by=order_by,
                                                   direction=direction)
        out: JsonDict = {"users": [_user_row_json(r) for r in rows], "total": total}
        if start + len(rows) < total:
            out["next_token"] = str(start + len(rows))
        return out

    async def user_json(self, user_id: str) -> JsonDict:
        user = await self.get_existing(user_id)
        profile = await self._profiles.get_profile(user_id) or (None, None)
        devices = await self._devices.get_devices(user_id)
        seen = [d.last_seen_ts for d in devices if d.last_seen_ts is not None]
        return {
            "name": user.user_id, "displayname": profile[0], "avatar_url": profile[1], "threepids": [],
            "external_ids": [], "is_guest": user.is_guest, "admin": user.admin, "deactivated": user.deactivated,
            "erased": await self._users.is_erased(user_id), "shadow_banned": user.shadow_banned,
            "locked": user.locked, "suspended": user.suspended, "creation_ts": user.creation_ts,
            "appservice_id": user.appservice_id, "user_type": user.user_type,
            "last_seen_ts": max(seen) if seen else None,
        }

    async def create_or_modify(self, requester: Requester, user_id: str, body: JsonDict) -> tuple[int, JsonDict]:
        """``PUT /_synapse/admin/v2/users/<user_id>``: 201 and the user if created, else 200."""
        self.check_local(user_id)
        password = body.get("password")
        if password is not None:
            password = self._hasher.validate_new_password(password)
        logout_devices = _bool_field(body, "logout_devices")
        displayname = _str_field(body, "displayname", 256)
        avatar_url = _str_field(body, "avatar_url")
        admin = _bool_field(body, "admin")
        deactivated = _bool_field(body, "deactivated")
        locked = _bool_field(body, "locked")
        user_type = body.get("user_type")
        if "user_type" in body and user_type not in USER_TYPES:
            raise MatrixError(400, f"Invalid user_type {user_type!r}", Codes.INVALID_PARAM)
        for field in ("threepids", "external_ids"):
            if body.get(field) not in (None, []):
                raise MatrixError(400, f"'{field}' is not supported by this server", Codes.INVALID_PARAM)

        user = await self._users.get_user(user_id)
        if user is None:
            if deactivated:
                raise MatrixError(400, "Cannot create a deactivated user", Codes.INVALID_PARAM)
            pw_hash = await self._hasher.hash(password) if password is not None else None
            await self._users.create_user(user_id, pw_hash, admin=bool(admin), user_type=user_type)
            await self._profiles.create_profile(user_id, displayname or UserID.from_string(user_id).localpart)
            if avatar_url is not None:
                await self._profiles.set_avatar_url(user_id, avatar_url)
            if locked:
                await self._store.set_user_flags(user_id, locked=True)
                self._users.invalidate_user(user_id)
            logger.info("admin %s created %s", requester.user_id, user_id)
            return 201, await self.user_json(user_id)

        if user_id == requester.user_id and admin is False:
            raise MatrixError(400, "You may not demote yourself", Codes.INVALID_PARAM)
        if user_id == requester.user_id and deactivated:
            raise MatrixError(400, "You may not deactivate yourself", Codes.INVALID_PARAM)
        if deactivated and not user.deactivated:
            await self._account.deactivate_user(user_id)
        elif deactivated is False and user.deactivated:
            if password is None and self._hasher.enabled:
                raise MatrixError(400, "Reactivating a user needs a new 'password'", Codes.MISSING_PARAM)
            await self._users.set_deactivated(user_id, False)
        if password is not None and not deactivated:
            await self._users.set_password_hash(user_id, await self._hasher.hash(password))
            if logout_devices is not False:
                await self._sessions.logout_all(user_id)
        if admin is not None:
            await self._users.set_admin(user_id, admin)
        if locked is not None or "user_type" in body:
            await self._store.set_user_flags(user_id, locked=locked, user_type=user_type,
                                             set_user_type="user_type" in body)
            self._users.invalidate_user(user_id)
        if displayname is not None:
            await self._profile_change(requester, user_id, "displayname", displayname)
        if avatar_url is not None:
            await self._profile_change(requester, user_id, "avatar_url", avatar_url)
        return 200, await self.user_json(user_id)

    async def _profile_change(self, requester: Requester, user_id: str, field: str, value: str) -> None:
        """Profile changes go through the profile handler (membership events, directory)."""
        target = Requester(user_id=user_id, device_id=None, access_token_id=None)
        try:
            await self._profile.set_field(target, user_id, field, {field: value})
        except MatrixError as e:
            logger.warning("admin %s: setting %s of %s: %s", requester.user_id, field, user_id, e)
            raise

    async def deactivate(self, requester: Requester, user_id: str, erase: bool) -> None:
        user = await self.get_existing(user_id)
        if user_id == requester.user_id:
            raise MatrixError(400, "You may not deactivate yourself", Codes.INVALID_PARAM)
        if not user.deactivated:
            await self._account.deactivate_user(user_id, erase=erase)
        elif erase:
            await self._users.mark_erased(user_id)

    async def reset_password(self, user_id: str, new_password: Any, logout_devices: bool) -> None:
        user = await self.get_existing(user_id)
        if user.deactivated:
            raise MatrixError(400, "The user is deactivated", Codes.INVALID_PARAM)
        password = self._hasher.validate_new_password(new_password)
        await self._users.set_password_hash(user_id, await self._hasher.hash(password))
        if logout_devices:
            await self._sessions.logout_all(user_id)

    async def whois(self, user_id: str) -> JsonDict:
        await self.get_existing(user_id)
        connections = [
            {"ip": d.last_seen_ip, "last_seen": d.last_seen_ts, "user_agent": d.last_seen_user_agent}
            for d in await self._devices.get_devices(user_id) if d.last_seen_ts is not None
        ]
        return {"user_id": user_id, "devices": {"": {"sessions": [{"connections": connections}]}}}

    async def set_admin(self, requester: Requester, user_id: str, admin: bool) -> None:
        await self.get_existing(user_id)
        if user_id == requester.user_id and not admin:
            raise MatrixError(400, "You may not demote yourself", Codes.INVALID_PARAM)
        await self._users.set_admin(user_id, admin)

    async def set_shadow_banned(self, user_id: str, banned: bool) -> None:
        await self.get_existing(user_id)
        await self._store.set_user_flags(user_id, shadow_banned=banned)
        self._users.invalidate_user(user_id)
        self._tokens.invalidate_all()

    async def get_ratelimit(self, user_id: str) -> JsonDict:
        await self.get_existing(user_id)
        override = await self._store.get_ratelimit_override(user_id)
        if override is None:
            return {}
        return {"messages_per_second": override[0], "burst_count": override[1]}

    async def set_ratelimit(self, user_id: str, body: JsonDict) -> JsonDict:
        await self.get_existing(user_id)
        values = []
        for field in ("messages_per_second", "burst_count"):
            value = body.get(field, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise MatrixError(400, f"'{field}' must be a non-negative integer", Codes.INVALID_PARAM)
            values.append(value)
        await self._store.set_ratelimit_override(user_id, values[0], values[1])
        if self._overrides is not None:
            self._overrides.invalidate(user_id)
        return {"messages_per_second": values[0], "burst_count": values[1]}

    async def delete_ratelimit(self, user_id: str) -> None:
        await self.get_existing(user_id)
        await self._store.delete_ratelimit_override(user_id)
        if self._overrides is not None:
            self._overrides.invalidate(user_id)

    async def devices(self, user_id: str) -> JsonDict:
        await self.get_existing(user_id)
        devices = [{**device_to_json(d), "user_id": user_id} for d in await self._devices.get_devices(user_id)]
        return {"devices": devices, "total": len(devices)}

    async def joined_rooms(self, user_id: str) -> JsonDict:
        await self.get_existing(user_id)
        rooms = sorted(await self._current.get_rooms_for_user(user_id))
        return {"joined_rooms": rooms, "total": len(rooms)}

    async def media(self, user_id: str, start: int, limit: int, direction: str) -> JsonDict:
        await self.get_existing(user_id)
        rows, total = await self._store.get_user_media(user_id, self._server_name, start, limit, direction)
        media = [{
            "media_id": r[0], "media_type": r[1], "media_length": r[2], "upload_name": r[3], "created_ts": r[4],
            "last_access_ts": r[5] if r[5] is not None else r[4], "quarantined_by": r[6],
            "safe_from_quarantine": r[7] is not None,
        } for r in rows]
        out: JsonDict = {"media": media, "total": total}
        if start + len(rows) < total:
            out["next_token"] = start + len(rows)
        return out

    async def login_as(self, requester: Requester, user_id: str, valid_until_ms: Optional[int]) -> JsonDict:
        """A puppet token: the admin's token acting as ``user_id`` (no device is created)."""
        user = await self.get_existing(user_id)
        if user_id == requester.user_id:
            raise MatrixError(400, "Cannot use the admin API to log in as yourself", Codes.INVALID_PARAM)
        if user.deactivated:
            raise MatrixError(400, "The user is deactivated", Codes.INVALID_PARAM)
        if valid_until_ms is not None and valid_until_ms <= self._clock.time_msec():
            raise MatrixError(400, "'valid_until_ms' is in the past", Codes.INVALID_PARAM)
        token = new_access_token()
        await self._tokens.add_access_token(requester.user_id, None, token, valid_until_ms=valid_until_ms,
                                            puppets_user_id=user_id)
        logger.info("admin %s logged in as %s", requester.user_id, user_id)
        return {"access_token": token}
