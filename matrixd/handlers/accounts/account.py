"""Account management: changing the password and deactivating the account.

Both re-authenticate the user through UIA (their current password).
Deactivation is final: the account is marked deactivated and loses its
password, every device and token, its memberships (it leaves joined rooms and
rejects invites), its profile and its directory entry; ``erase`` is recorded.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.accounts.devices import DeviceHandler
from matrixd.handlers.accounts.passwords import PasswordHasher
from matrixd.handlers.accounts.sessions import SessionHandler
from matrixd.handlers.accounts.uia import Reauthentication
from matrixd.handlers.accounts.user_directory import UserDirectoryHandler
from matrixd.handlers.rooms.membership import RoomMemberHandler
from matrixd.storage.accounts import TokenStore, UserStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.login_tokens import LoginTokenStore
from matrixd.storage.profiles import ProfileStore
from matrixd.types import JsonDict, Requester

logger = logging.getLogger(__name__)

#: Run with the user id after an account is deactivated (pushers, account data, ...).
DeactivationCallback = Callable[[str], Awaitable[None]]


class AccountHandler:
    def __init__(
        self,
        *,
        users: UserStore,
        tokens: TokenStore,
        profiles: ProfileStore,
        login_tokens: LoginTokenStore,
        current_state: CurrentStateStore,
        hasher: PasswordHasher,
        reauth: Reauthentication,
        devices: DeviceHandler,
        sessions: SessionHandler,
        membership: RoomMemberHandler,
        directory: UserDirectoryHandler,
    ) -> None:
        self._users = users
        self._tokens = tokens
        self._profiles = profiles
        self._login_tokens = login_tokens
        self._current = current_state
        self._hasher = hasher
        self._reauth = reauth
        self._devices = devices
        self._sessions = sessions
        self._membership = membership
        self._directory = directory
        self._deactivation_callbacks: list[DeactivationCallback] = []

    def add_deactivation_callback(self, cb: DeactivationCallback) -> None:
        self._deactivation_callbacks.append(cb)

    async def change_password(self, requester: Requester, body: JsonDict) -> None:
        """``POST /account/password``: other sessions are logged out unless ``logout_devices`` is false."""
        if not self._hasher.enabled:
            raise MatrixError(403, "Password changes are disabled on this server", Codes.FORBIDDEN)
        auth = body.get("auth")
        continuing = isinstance(auth, dict) and "session" in auth
        _check_password_body(self._hasher, body, required=not continuing)
        result = await self._reauth.require(requester, body, method="POST", operation="/account/password",
                                            secret_params=("new_password",))
        params = result.params
        _check_password_body(self._hasher, params, required=False)
        password_hash = result.hashed.get("new_password")
        if password_hash is None:
            raise MatrixError(400, "Missing 'new_password'", Codes.MISSING_PARAM)
        await self._users.set_password_hash(requester.user_id, password_hash)
        if params.get("logout_devices", True):
            await self._devices.delete_all_devices(requester.user_id, except_device_id=requester.device_id)
            await self._tokens.delete_tokens_for_user(requester.user_id, except_token_id=requester.access_token_id)
        logger.info("password changed for %s", requester.user_id)

    async def deactivate(self, requester: Requester, body: JsonDict) -> JsonDict:
        """``POST /account/deactivate``."""
        erase = body.get("erase", False)
        if not isinstance(erase, bool):
            raise MatrixError(400, "'erase' must be a boolean", Codes.BAD_JSON)
        id_server = body.get("id_server")
        if id_server is not None and not isinstance(id_server, str):
            raise MatrixError(400, "'id_server' must be a string", Codes.BAD_JSON)
        result = await self._reauth.require(requester, body, method="POST", operation="/account/deactivate")
        await self.deactivate_user(requester.user_id, erase=bool(result.params.get("erase", False)))
        # No third-party identifiers are ever bound here, so there is nothing to unbind.
        return {"id_server_unbind_result": "success"}

    async def deactivate_user(self, user_id: str, *, erase: bool = False) -> None:
        await self._users.deactivate(user_id)
        await self._sessions.logout_all(user_id)
        await self._login_tokens.delete_for_user(user_id)
        leaver = Requester(user_id=user_id, device_id=None, access_token_id=None)
        for m in await self._current.get_local_memberships(user_id, ["join", "invite", "knock"]):
            try:
                await self._membership.update_membership(leaver, user_id, m.room_id, "leave")
            except MatrixError as e:
                logger.warning("deactivating %s: could not leave %s: %s", user_id, m.room_id, e)
        await self._profiles.clear_profile(user_id)
        await self._directory.on_user_deactivated(user_id)
        if erase:
            await self._users.mark_erased(user_id)
        for cb in self._deactivation_callbacks:
            try:
                await cb(user_id)
            except Exception:
                logger.exception("deactivation callback %r failed for %s", cb, user_id)
        logger.info("deactivated %s%s", user_id, " (erase requested)" if erase else "")


def _check_password_body(hasher: PasswordHasher, body: JsonDict, *, required: bool) -> str:
    """The new password, checked; a request continuing a UIA session may leave it to the session."""
    logout = body.get("logout_devices", True)
    if not isinstance(logout, bool):
        raise MatrixError(400, "'logout_devices' must be a boolean", Codes.BAD_JSON)
    if body.get("new_password") is None:
        if required:
            raise MatrixError(400, "Missing 'new_password'", Codes.MISSING_PARAM)
        return ""
    return hasher.validate_new_password(body["new_password"])
