"""Profiles of local users: reading, setting and deleting fields, and carrying
display name / avatar changes into the user's membership event of every room
they are joined to (not for a shadow-banned requester: their profile changes,
their rooms see nothing).

Fields: ``displayname`` (string, at most 256 characters), ``avatar_url`` (an
``mxc://`` URI, at most 1000 characters; empty clears it), ``m.tz`` (string)
and namespaced custom keys (any JSON); the whole profile stays under 64 KiB.
Profiles of users on other servers need federation and are 404 for now.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Awaitable, Callable, Optional, Protocol

from matrixd.api.errors import AuthError, Codes, MatrixError, NotFoundError
from matrixd.config.registration import RegistrationConfig
from matrixd.handlers.events.creation import EventCreationHandler, EventSpec
from matrixd.storage.accounts import UserStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.profiles import ProfileStore
from matrixd.types import JsonDict, Requester, UserID, get_domain_from_id

logger = logging.getLogger(__name__)

DISPLAYNAME, AVATAR_URL, TZ = "displayname", "avatar_url", "m.tz"
MAX_DISPLAYNAME_LEN = 256
MAX_AVATAR_URL_LEN = 1000
MAX_PROFILE_SIZE = 64 * 1024
MAX_KEY_BYTES = 255
_KEY_RE = re.compile(r"^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$")
PROFILE_TOO_LARGE = "M_PROFILE_TOO_LARGE"
KEY_TOO_LARGE = "M_KEY_TOO_LARGE"

#: ``(user_id, displayname, avatar_url)`` after a local user's display name or avatar changed.
ProfileListener = Callable[[str, Optional[str], Optional[str]], Awaitable[None]]
#: Whether an unknown local user exists after all (application services asked): True if now registered.
UnknownUserResolver = Callable[[str], Awaitable[bool]]


class RemoteProfiles(Protocol):
    """Profiles of users on other servers (federation ``/query/profile``)."""

    async def get_remote_profile(self, user_id: str, field: Optional[str] = None) -> JsonDict: ...


def _encoded_size(profile: JsonDict) -> int:
    return len(json.dumps(profile, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


class ProfileHandler:
    def __init__(
        self,
        *,
        server_name: str,
        config: RegistrationConfig,
        users: UserStore,
        profiles: ProfileStore,
        current_state: CurrentStateStore,
        creation: EventCreationHandler,
        on_changed: ProfileListener,
    ) -> None:
        self._server_name = server_name
        self._config = config
        self._users = users
        self._profiles = profiles
        self._current = current_state
        self._creation = creation
        self._on_changed = on_changed
        self._remote: Optional[RemoteProfiles] = None
        self._provision: Optional[UnknownUserResolver] = None

    def set_unknown_user_resolver(self, resolver: UnknownUserResolver) -> None:
        """Ask ``resolver`` (application services) about unknown local users before answering 404."""
        self._provision = resolver

    def set_remote_profiles(self, remote: RemoteProfiles) -> None:
        """Answer for users of other servers through ``remote`` (wired once federation exists)."""
        self._remote = remote

    def _remote_for(self, user_id: str) -> Optional[RemoteProfiles]:
        try:
            UserID.from_string(user_id)
        except ValueError:
            return None
        return self._remote if get_domain_from_id(user_id) != self._server_name else None

    # -- reading ----------------------------------------------------------------------

    async def _local_profile(self, user_id: str) -> JsonDict:
        """Every field of a local user's profile; 404 for unknown, remote or deactivated users."""
        try:
            UserID.from_string(user_id)
        except ValueError:
            raise MatrixError(400, f"Invalid user id {user_id!r}", Codes.INVALID_PARAM) from None
        if get_domain_from_id(user_id) != self._server_name:
            raise NotFoundError("Profiles of users on other servers are not available yet")
        user = await self._users.get_user(user_id)
        if user is None and self._provision is not None and await self._provision(user_id):
            user = await self._users.get_user(user_id)
        if user is None or user.deactivated:
            raise NotFoundError("Profile not found")
        row = await self._profiles.get_profile(user_id)
        profile: JsonDict = {}
        if row is not None:
            if row[0] is not None:
                profile[DISPLAYNAME] = row[0]
            if row[1] is not None:
                profile[AVATAR_URL] = row[1]
        profile.update(await self._profiles.get_profile_fields(user_id))
        return profile

    async def get_profile(self, user_id: str) -> JsonDict:
        remote = self._remote_for(user_id)
        if remote is not None:
            return await remote.get_remote_profile(user_id)
        return await self._local_profile(user_id)

    async def get_field(self, user_id: str, key: str) -> JsonDict:
        self._check_key(key)
        remote = self._remote_for(user_id)
        profile = await (remote.get_remote_profile(user_id, key) if remote is not None
                         else self._local_profile(user_id))
        if key not in profile:
            raise NotFoundError(f"The user has no {key}")
        return {key: profile[key]}

    # -- writing ----------------------------------------------------------------------

    def _check_key(self, key: str) -> None:
        if len(key.encode("utf-8")) > MAX_KEY_BYTES:
            raise MatrixError(400, f"Profile keys may be at most {MAX_KEY_BYTES} bytes", KEY_TOO_LARGE)
        if not _KEY_RE.match(key):
            raise MatrixError(400, f"Invalid profile key {key!r}", Codes.INVALID_PARAM)

    async def _check_may_change(self, requester: Requester, user_id: str, key: str) -> None:
        self._check_key(key)
        if requester.user_id != user_id:
            raise AuthError(403, "You may only change your own profile")
        if requester.is_guest and key != DISPLAYNAME:
            raise AuthError(403, "Guests may only change their display name", Codes.GUEST_ACCESS_FORBIDDEN)
        if key == DISPLAYNAME and not self._config.enable_set_displayname:
            raise AuthError(403, "Changing the display name is disabled on this server")
        if key == AVATAR_URL and not self._config.enable_set_avatar_url:
            raise AuthError(403, "Changing the avatar is disabled on this server")

    def _validate(self, key: str, value: Any) -> Any:
        """The value to store for ``key`` (None clears displayname / avatar_url)."""
        if key == DISPLAYNAME:
            if value is not None and not isinstance(value, str):
                raise MatrixError(400, "displayname must be a string", Codes.BAD_JSON)
            if value is not None and len(value) > MAX_DISPLAYNAME_LEN:
                raise MatrixError(400, f"displayname is longer than {MAX_DISPLAYNAME_LEN} characters",
                                  Codes.INVALID_PARAM)
            return value or None
        if key == AVATAR_URL:
            if value is not None and not isinstance(value, str):
                raise MatrixError(400, "avatar_url must be a string", Codes.BAD_JSON)
            if value and not value.startswith("mxc://"):
                raise MatrixError(400, "avatar_url must be an mxc:// URI", Codes.INVALID_PARAM)
            if value is not None and len(value) > MAX_AVATAR_URL_LEN:
                raise MatrixError(400, f"avatar_url is longer than {MAX_AVATAR_URL_LEN} characters",
                                  Codes.INVALID_PARAM)
            return value or None
        if key == TZ and not isinstance(value, str):
            raise MatrixError(400, "m.tz must be a string", Codes.INVALID_PARAM)
        return value

    async def set_field(self, requester: Requester, user_id: str, key: str, body: JsonDict) -> None:
        await self._check_may_change(requester, user_id, key)
        if key not in body:
            raise MatrixError(400, f"Missing '{key}' in the request body", Codes.MISSING_PARAM)
        value = self._validate(key, body[key])
        profile = await self._local_profile(user_id)
        if value is None:
            profile.pop(key, None)
        else:
            profile[key] = value
        if _encoded_size(profile) > MAX_PROFILE_SIZE:
            raise MatrixError(400, f"The profile would exceed {MAX_PROFILE_SIZE} bytes", PROFILE_TOO_LARGE)
        await self._store(user_id, key, value, propagate=not requester.shadow_banned)

    async def delete_field(self, requester: Requester, user_id: str, key: str) -> None:
        await self._check_may_change(requester, user_id, key)
        await self._local_profile(user_id)
        await self._store(user_id, key, None, propagate=not requester.shadow_banned)

    async def _store(self, user_id: str, key: str, value: Any, *, propagate: bool) -> None:
        if key == DISPLAYNAME:
            await self._profiles.set_displayname(user_id, value)
        elif key == AVATAR_URL:
            await self._profiles.set_avatar_url(user_id, value)
        elif value is None:
            await self._profiles.delete_profile_field(user_id, key)
        else:
            await self._profiles.set_profile_field(user_id, key, value)
            return
        if key in (DISPLAYNAME, AVATAR_URL):
            row = await self._profiles.get_profile(user_id)
            displayname, avatar_url = row if row is not None else (None, None)
            await self._on_changed(user_id, displayname, avatar_url)
            if propagate:
                await self.update_room_memberships(user_id, displayname, avatar_url)

    async def update_room_memberships(self, user_id: str, displayname: Optional[str],
                                      avatar_url: Optional[str]) -> None:
        """Send a new join event carrying the profile into every room the user is joined to.

        A room that refuses the event (e.g. the user lacks power there now) is
        logged and skipped; the profile change itself stands.
        """
        for room_id in sorted(await self._current.get_rooms_for_user(user_id)):
            event = await self._current.get_current_state_event(room_id, "m.room.member", user_id)
            if event is None or event.membership != "join":
                continue
            content = {k: v for k, v in event.content.items() if k != "join_authorised_via_users_server"}
            for key, value in ((DISPLAYNAME, displayname), (AVATAR_URL, avatar_url)):
                if value is None:
                    content.pop(key, None)
                else:
                    content[key] = value
            if content == event.content:
                continue
            try:
                await self._creation.send(room_id, EventSpec("m.room.member", user_id, content, user_id))
            except MatrixError as e:
                logger.warning("could not update the profile of %s in %s: %s", user_id, room_id, e)
