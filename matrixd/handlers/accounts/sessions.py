"""Sessions: the device and tokens a successful login or registration gets,
refreshing them, and logging out.

Access tokens are random (``secrets``) and only their digests are stored.  A
client that sets ``refresh_token: true`` gets a refresh token and an access
token that expires after ``refreshable_access_token_lifetime``; otherwise the
access token lives for ``nonrefreshable_access_token_lifetime`` (forever if
unset).  ``session_lifetime`` caps everything.  Reusing a device id replaces the
tokens that device had.
"""

from __future__ import annotations

import secrets
import string
from typing import Optional

import attrs

from matrixd.api.errors import Codes, InvalidClientTokenError, MatrixError
from matrixd.config.registration import RegistrationConfig
from matrixd.handlers.accounts.devices import MAX_DEVICE_DISPLAY_NAME_LEN, DeviceHandler, check_device_id
from matrixd.storage.accounts import DeviceStore, TokenStore, UserStore
from matrixd.types import JsonDict, Requester
from matrixd.util.clock import Clock

_DEVICE_ID_ALPHABET = string.ascii_uppercase


def new_access_token() -> str:
    return "mda_" + secrets.token_urlsafe(32)


def new_refresh_token() -> str:
    return "mdr_" + secrets.token_urlsafe(32)


def new_device_id() -> str:
    return "".join(secrets.choice(_DEVICE_ID_ALPHABET) for _ in range(10))


def _min(*values: Optional[int]) -> Optional[int]:
    present = [v for v in values if v is not None]
    return min(present) if present else None


@attrs.frozen(slots=True)
class IssuedSession:
    user_id: str
    device_id: str
    access_token: str
    refresh_token: Optional[str] = None
    expires_in_ms: Optional[int] = None

    def to_json(self) -> JsonDict:
        """The login/register response fields for this session."""
        out: JsonDict = {
            "user_id": self.user_id,
            "access_token": self.access_token,
            "device_id": self.device_id,
            "home_server": self.user_id.split(":", 1)[1],
        }
        if self.refresh_token is not None:
            out["refresh_token"] = self.refresh_token
        if self.expires_in_ms is not None:
            out["expires_in_ms"] = self.expires_in_ms
        return out


class SessionHandler:
    def __init__(self, clock: Clock, config: RegistrationConfig, users: UserStore, devices: DeviceStore,
                 tokens: TokenStore, device_handler: DeviceHandler) -> None:
        self._clock = clock
        self._config = config
        self._users = users
        self._devices = devices
        self._tokens = tokens
        self._device_handler = device_handler

    async def issue(self, user_id: str, device_id: Optional[str], initial_display_name: Optional[str], *,
                    want_refresh: bool = False) -> IssuedSession:
        """Create (or reuse) a device and give it fresh tokens."""
        if device_id is None:
            device_id = new_device_id()
        else:
            device_id = check_device_id(device_id)
            if await self._devices.get_device(user_id, device_id) is not None:
                await self._tokens.delete_tokens_for_user(user_id, device_id=device_id)
                await self._tokens.delete_refresh_tokens_for_user(user_id, device_id)
        display_name = initial_display_name[:MAX_DEVICE_DISPLAY_NAME_LEN] if initial_display_name else None
        if await self._devices.store_device(user_id, device_id, display_name):
            await self._device_handler.on_device_created(user_id, device_id)

        cfg = self._config
        now = self._clock.time_msec()
        session_end = now + cfg.session_lifetime_ms if cfg.session_lifetime_ms is not None else None
        access_token = new_access_token()
        if want_refresh and cfg.refreshable_access_token_lifetime_ms is not None:
            refresh_token = new_refresh_token()
            refresh_end = now + cfg.refresh_token_lifetime_ms if cfg.refresh_token_lifetime_ms is not None else None
            refresh_id = await self._tokens.add_refresh_token(
                user_id, device_id, refresh_token, expiry_ts=_min(refresh_end, session_end),
                ultimate_session_expiry_ts=session_end,
            )
            valid_until = _min(now + cfg.refreshable_access_token_lifetime_ms, session_end)
            await self._tokens.add_access_token(user_id, device_id, access_token, valid_until_ms=valid_until,
                                                refresh_token_id=refresh_id)
        else:
            refresh_token = None
            lifetime = cfg.nonrefreshable_access_token_lifetime_ms
            valid_until = _min(now + lifetime if lifetime is not None else None, session_end)
            await self._tokens.add_access_token(user_id, device_id, access_token, valid_until_ms=valid_until)
        return IssuedSession(user_id, device_id, access_token, refresh_token,
                             valid_until - now if valid_until is not None else None)

    async def refresh(self, refresh_token: str) -> IssuedSession:
        """Trade a refresh token for a new access token and refresh token.

        Raises:
            InvalidClientTokenError: 401 ``M_UNKNOWN_TOKEN`` for unknown or revoked
                tokens; with ``soft_logout`` when the token or session merely expired.
        """
        info = await self._tokens.get_refresh_token(refresh_token)
        if info is None:
            raise InvalidClientTokenError("Unknown or revoked refresh token")
        now = self._clock.time_msec()
        for limit in (info.expiry_ts, info.ultimate_session_expiry_ts):
            if limit is not None and limit <= now:
                raise InvalidClientTokenError("The refresh token has expired", soft_logout=True)
        user = await self._users.get_user(info.user_id)
        if user is None or user.deactivated:
            raise InvalidClientTokenError("Unknown or revoked refresh token")
        if user.locked:
            raise MatrixError(401, "User account has been locked", Codes.USER_LOCKED, {"soft_logout": True})

        cfg = self._config
        refreshable = cfg.refreshable_access_token_lifetime_ms or 5 * 60_000
        session_end = info.ultimate_session_expiry_ts
        refresh_end = now + cfg.refresh_token_lifetime_ms if cfg.refresh_token_lifetime_ms is not None else None
        valid_until = _min(now + refreshable, session_end)
        new_refresh, new_access = new_refresh_token(), new_access_token()
        new_id = await self._tokens.rotate_refresh_token(
            info, new_refresh, new_access, refresh_expiry_ts=_min(refresh_end, session_end),
            access_valid_until_ms=valid_until,
        )
        if new_id is None:
            raise InvalidClientTokenError("Unknown or revoked refresh token")
        assert valid_until is not None
        return IssuedSession(info.user_id, info.device_id, new_access, new_refresh, valid_until - now)

    async def logout(self, requester: Requester) -> None:
        """End the requester's session: their device and everything bound to it."""
        if requester.device_id is not None:
            await self._device_handler.delete_devices(requester.user_id, [requester.device_id])
        elif requester.access_token_id is not None:
            await self._tokens.delete_token_by_id(requester.access_token_id)

    async def logout_all(self, user_id: str) -> None:
        await self._device_handler.delete_all_devices(user_id)
        await self._tokens.delete_tokens_for_user(user_id)
        await self._tokens.delete_refresh_tokens_for_user(user_id)
