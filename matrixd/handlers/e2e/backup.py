"""Server-side key backups (``/room_keys/version`` and ``/room_keys/keys``).

Keys may only be written to the user's latest backup version; writing to
another is ``403 M_WRONG_ROOM_KEYS_VERSION`` naming the current one.  When a
session is already backed up the stored key is replaced only by a better one
(verified, then lower first message index, then fewer forwards).
"""

from __future__ import annotations

from typing import Any, Optional

from matrixd.api.errors import Codes, MatrixError, NotFoundError
from matrixd.handlers.e2e.signing import bad_json, invalid_param, require_dict
from matrixd.storage.room_keys import BackupVersion, RoomKey, RoomKeyStore
from matrixd.types import JsonDict

MAX_VERSION = 2**62


def parse_version(version: str) -> Optional[int]:
    """A version string as we issue them (a positive decimal), None for anything else."""
    if not version.isascii() or not version.isdigit() or len(version) > 18:
        return None
    value = int(version)
    return value if 0 < value < MAX_VERSION else None


def _unknown_version() -> NotFoundError:
    return NotFoundError("Unknown backup version")


def parse_room_key(value: Any, where: str) -> RoomKey:
    key = require_dict(value, where)
    fmi, fc, verified, data = (key.get("first_message_index"), key.get("forwarded_count"),
                               key.get("is_verified"), key.get("session_data"))
    for name, v in (("first_message_index", fmi), ("forwarded_count", fc)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v >= 2**63:
            raise bad_json(f"{where}.{name} must be a non-negative integer")
    if not isinstance(verified, bool):
        raise bad_json(f"{where}.is_verified must be a boolean")
    if not isinstance(data, dict):
        raise bad_json(f"{where}.session_data must be an object")
    assert isinstance(fmi, int) and isinstance(fc, int)
    return RoomKey(fmi, fc, verified, data)


def parse_sessions(value: Any, where: str) -> dict[str, RoomKey]:
    body = require_dict(value, where)
    sessions = require_dict(body.get("sessions"), f"{where}.sessions" if where else "sessions")
    return {sid: parse_room_key(k, f"sessions.{sid}") for sid, k in sessions.items()}


class KeyBackupHandler:
    def __init__(self, store: RoomKeyStore) -> None:
        self._store = store

    # -- versions ---------------------------------------------------------------------

    async def create_version(self, user_id: str, body: JsonDict) -> JsonDict:
        algorithm, auth_data = _parse_version_body(body)
        version = await self._store.create_version(user_id, algorithm, auth_data)
        return {"version": str(version)}

    async def get_version_info(self, user_id: str, version: Optional[str]) -> JsonDict:
        if version is None:
            info = await self._store.get_version(user_id, None)
            if info is None:
                raise NotFoundError("No current backup version")
        else:
            info = await self._live_version(user_id, version)
        count = await self._store.count_keys(user_id, info.version)
        return {"algorithm": info.algorithm, "auth_data": info.auth_data, "count": count,
                "etag": str(info.etag), "version": str(info.version)}

    async def update_version(self, user_id: str, version: str, body: JsonDict) -> None:
        algorithm, auth_data = _parse_version_body(body)
        body_version = body.get("version")
        if body_version is not None and body_version != version:
            raise invalid_param("The version in the body does not match the version in the path")
        info = await self._live_version(user_id, version)
        if algorithm != info.algorithm:
            raise invalid_param("The algorithm does not match the backup's algorithm")
        await self._store.update_auth_data(user_id, info.version, auth_data)

    async def delete_version(self, user_id: str, version: str) -> None:
        number = parse_version(version)
        info = await self._store.get_version(user_id, number) if number is not None else None
        if info is None:
            raise _unknown_version()
        if not info.deleted:
            await self._store.delete_version(user_id, info.version)

    # -- keys --------------------------------------------------------------------------------

    async def put_keys(self, user_id: str, version: str, keys: dict[str, dict[str, RoomKey]]) -> JsonDict:
        number = parse_version(version)
        if number is not None:
            result = await self._store.put_keys(user_id, number, keys)
            if result is not None:
                return {"etag": str(result[0]), "count": result[1]}
        current = await self._store.get_version(user_id, None)
        requested = await self._store.get_version(user_id, number) if number is not None else None
        if current is None or requested is None or requested.deleted:
            raise _unknown_version()
        raise MatrixError(403, "Wrong backup version.", Codes.WRONG_ROOM_KEYS_VERSION,
                          {"current_version": str(current.version)})

    async def get_keys(self, user_id: str, version: str, room_id: Optional[str] = None,
                       session_id: Optional[str] = None) -> JsonDict:
        info = await self._live_version(user_id, version)
        keys = await self._store.get_keys(user_id, info.version, room_id, session_id)
        if session_id is not None:
            assert room_id is not None
            key = keys.get(room_id, {}).get(session_id)
            if key is None:
                raise NotFoundError("No room_keys found")
            return key.to_json()
        if room_id is not None:
            return {"sessions": {sid: k.to_json() for sid, k in keys.get(room_id, {}).items()}}
        return {"rooms": {rid: {"sessions": {sid: k.to_json() for sid, k in sessions.items()}}
                          for rid, sessions in keys.items()}}

    async def delete_keys(self, user_id: str, version: str, room_id: Optional[str] = None,
                          session_id: Optional[str] = None) -> JsonDict:
        info = await self._live_version(user_id, version)
        etag, count = await self._store.delete_keys(user_id, info.version, room_id, session_id)
        return {"etag": str(etag), "count": count}

    async def _live_version(self, user_id: str, version: str) -> BackupVersion:
        number = parse_version(version)
        info = await self._store.get_version(user_id, number) if number is not None else None
        if info is None or info.deleted:
            raise _unknown_version()
        return info


def _parse_version_body(body: JsonDict) -> tuple[str, JsonDict]:
    algorithm = body.get("algorithm")
    if algorithm is None:
        raise MatrixError(400, "Missing 'algorithm'", Codes.MISSING_PARAM)
    if not isinstance(algorithm, str) or not algorithm:
        raise bad_json("'algorithm' must be a non-empty string")
    if body.get("auth_data") is None:
        raise MatrixError(400, "Missing 'auth_data'", Codes.MISSING_PARAM)
    return algorithm, require_dict(body.get("auth_data"), "auth_data")
