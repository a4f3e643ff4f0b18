"""Server administration of media: listing a room's media, quarantine,
protection from quarantine, deleting local media and purging the remote cache.

Quarantine is recorded in ``media_quarantine`` (our own table, so the media
area's tables are untouched); protected media are never quarantined.  Deleting
media removes its rows and its files (content and thumbnails) in a background
job of bounded batches (``media_cleanup``), which the request waits for.
"""

from __future__ import annotations

import logging
from typing import Optional
from urllib.parse import urlparse

from matrixd.api.errors import Codes, MatrixError, NotFoundError
from matrixd.handlers.admin.media_cleanup import MediaCleanup
from matrixd.storage.admin import AdminStore
from matrixd.storage.media import MediaStore
from matrixd.types import JsonDict

logger = logging.getLogger(__name__)


def _split_mxc(uri: str) -> Optional[tuple[str, str]]:
    parsed = urlparse(uri)
    media_id = parsed.path.lstrip("/")
    if parsed.scheme != "mxc" or not parsed.netloc or not media_id or "/" in media_id:
        return None
    return parsed.netloc, media_id


class MediaAdminHandler:
    def __init__(self, *, server_name: str, store: AdminStore, media: MediaStore,
                 cleanup: MediaCleanup) -> None:
        self._server_name = server_name
        self._store = store
        self._media = media
        self._cleanup = cleanup

    async def room_media(self, room_id: str) -> JsonDict:
        local: list[str] = []
        remote: list[str] = []
        for uri in await self._store.get_room_media(room_id):
            parts = _split_mxc(uri)
            if parts is not None:
                (local if parts[0] == self._server_name else remote).append(uri)
        return {"local": local, "remote": remote}

    async def quarantine(self, server_name: str, media_id: str, by: str) -> None:
        await self._store.quarantine_media(server_name, [media_id], by)

    async def unquarantine(self, server_name: str, media_id: str) -> None:
        await self._store.unquarantine_media(server_name, media_id)

    async def quarantine_room(self, room_id: str, by: str) -> JsonDict:
        count = 0
        for uri in await self._store.get_room_media(room_id):
            parts = _split_mxc(uri)
            if parts is not None:
                count += await self._store.quarantine_media(parts[0], [parts[1]], by)
        return {"num_quarantined": count}

    async def quarantine_user(self, user_id: str, by: str) -> JsonDict:
        ids = await self._store.local_media_ids_for_user(user_id)
        return {"num_quarantined": await self._store.quarantine_media(self._server_name, ids, by)}

    async def is_quarantined(self, server_name: str, media_id: str) -> bool:
        return await self._store.is_quarantined(server_name, media_id)

    async def protect(self, media_id: str, protected: bool) -> None:
        if await self._media.get_local_media(media_id) is None:
            raise NotFoundError("Unknown media")
        await self._store.set_protected(self._server_name, media_id, protected)

    async def delete_local(self, server_name: str, media_id: str) -> JsonDict:
        if server_name != self._server_name:
            raise MatrixError(400, "Can only delete local media", Codes.INVALID_PARAM)
        if await self._media.get_local_media(media_id) is None:
            raise NotFoundError("Unknown media")
        deleted = [m for _, m in await self._cleanup.delete_local_one(media_id)]
        return {"deleted_media": deleted, "total": len(deleted)}

    async def delete_before(self, server_name: str, before_ts: int, size_gt: int, keep_profiles: bool) -> JsonDict:
        if server_name != self._server_name:
            raise MatrixError(400, "Can only delete local media", Codes.INVALID_PARAM)
        if before_ts < 0 or size_gt < 0:
            raise MatrixError(400, "before_ts and size_gt must not be negative", Codes.INVALID_PARAM)
        deleted = [m for _, m in await self._cleanup.delete_local_before(before_ts, size_gt, keep_profiles)]
        return {"deleted_media": deleted, "total": len(deleted)}

    async def purge_remote_cache(self, before_ts: int) -> JsonDict:
        if before_ts < 0:
            raise MatrixError(400, "before_ts must not be negative", Codes.INVALID_PARAM)
        return {"deleted": len(await self._cleanup.purge_remote_before(before_ts))}
