"""``GET /pushers`` and ``POST /pushers/set``; pushers die with their device and their user."""

from __future__ import annotations

from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from matrixd.api.errors import Codes, InvalidParamError, MatrixError, MissingParamError
from matrixd.push.gateway import NOTIFY_PATH
from matrixd.push.pool import PusherPool
from matrixd.storage.pushers import PusherStore
from matrixd.types import JsonDict, Requester

MAX_PUSHKEY_BYTES = 512
MAX_APP_ID_CHARS = 64
SUPPORTED_KINDS = frozenset({"http"})


def _check_url(data: Any) -> None:
    if not isinstance(data, dict):
        raise InvalidParamError("'data' must be an object")
    url = data.get("url")
    if not isinstance(url, str):
        raise MissingParamError("'data.url' is required for http pushers")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path != NOTIFY_PATH:
        raise InvalidParamError(f"'data.url' must be an http(s) URL with path {NOTIFY_PATH}")
    fmt = data.get("format")
    if fmt is not None and fmt != "event_id_only":
        raise InvalidParamError("'data.format' must be 'event_id_only' or absent")


class PushersHandler:
    def __init__(self, store: PusherStore, pool: PusherPool, events_position: Callable[[], int]) -> None:
        self._store = store
        self._pool = pool
        self._events_position = events_position

    async def get_pushers(self, user_id: str) -> list[JsonDict]:
        return [p.to_client() for p in await self._store.get_pushers(user_id)]

    async def set_pusher(self, requester: Requester, body: JsonDict) -> None:
        """Create, replace (same app id and pushkey) or, with ``kind: null``, delete a pusher."""
        missing = [k for k in ("kind", "app_id", "pushkey") if k not in body]
        if missing:
            raise MissingParamError(f"Missing parameters: {', '.join(missing)}")
        kind, app_id, pushkey = body["kind"], body["app_id"], body["pushkey"]
        if not isinstance(app_id, str) or not app_id or len(app_id) > MAX_APP_ID_CHARS:
            raise InvalidParamError(f"'app_id' must be a string of 1 to {MAX_APP_ID_CHARS} characters")
        if not isinstance(pushkey, str) or not pushkey or len(pushkey.encode("utf-8")) > MAX_PUSHKEY_BYTES:
            raise InvalidParamError(f"'pushkey' must be a string of 1 to {MAX_PUSHKEY_BYTES} bytes")
        user_id = requester.user_id
        if kind is None:
            await self._store.delete_pusher(user_id, app_id, pushkey)
            await self._pool.reload_user(user_id)
            return
        if not isinstance(kind, str):
            raise InvalidParamError("'kind' must be a string or null")
        if kind not in SUPPORTED_KINDS:
            raise MatrixError(400, f"Pusher kind {kind!r} is not supported", Codes.INVALID_PARAM)
        missing = [k for k in ("app_display_name", "device_display_name", "lang", "data") if k not in body]
        if missing:
            raise MissingParamError(f"Missing parameters: {', '.join(missing)}")
        for key in ("app_display_name", "device_display_name", "lang"):
            if not isinstance(body[key], str):
                raise InvalidParamError(f"'{key}' must be a string")
        profile_tag: Optional[Any] = body.get("profile_tag")
        if profile_tag is not None and not isinstance(profile_tag, str):
            raise InvalidParamError("'profile_tag' must be a string")
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise InvalidParamError("'append' must be a boolean")
        data = body["data"]
        _check_url(data)
        displaced = await self._store.add_pusher(
            user_id=user_id, device_id=requester.device_id, kind=kind, app_id=app_id, pushkey=pushkey,
            app_display_name=body["app_display_name"], device_display_name=body["device_display_name"],
            profile_tag=profile_tag, lang=body["lang"], data=dict(data),
            last_stream_ordering=self._events_position(), append=append,
        )
        for other in {user_id, *displaced}:
            await self._pool.reload_user(other)

    async def on_devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        """Device deletion callback: the devices' pushers go with them."""
        if await self._store.delete_pushers_of_devices(user_id, device_ids):
            await self._pool.reload_user(user_id)

    async def on_user_deactivated(self, user_id: str) -> None:
        await self._store.delete_pushers_of_user(user_id)
        await self._pool.reload_user(user_id)
