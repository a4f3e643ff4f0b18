"""The media repository's tables: local media, cached remote media, thumbnails.

Only the metadata lives here; the bytes are in the media store
(``matrixd.media.storage``). The media repository (master or media worker) is
the only writer of these tables.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.util.clock import Clock


@attrs.frozen(slots=True)
class ImageInfo:
    """What the thumbnailer found in a file: ``state`` is image / not_image / too_large."""

    state: str
    width: Optional[int] = None
    height: Optional[int] = None
    animated: bool = False


@attrs.frozen(slots=True)
class MediaInfo:
    """One media item, local (``origin`` None) or a cached copy of remote media.

    A local item made by ``/create`` and not yet uploaded has ``media_length``
    None (``uploaded`` False).
    """

    media_id: str
    origin: Optional[str]
    media_type: Optional[str]
    media_length: Optional[int]
    upload_name: Optional[str]
    created_ts: int
    sha256: Optional[str]
    # Stored during the unauthenticated-media freeze: not served on the old endpoints.
    authenticated: bool
    # None until the file has been looked at.
    image: Optional[ImageInfo]
    user_id: Optional[str] = None
    unused_expires_at: Optional[int] = None

    @property
    def uploaded(self) -> bool:
        return self.media_length is not None


@attrs.frozen(slots=True)
class ThumbnailInfo:
    """A stored thumbnail: asked for as (box, method, animated), came out width x height."""

    box_width: int
    box_height: int
    method: str
    animated: bool
    width: int
    height: int
    media_type: str
    media_length: int


def _image(state: Optional[str], width: Any, height: Any, animated: Any) -> Optional[ImageInfo]:
    if state is None:
        return None
    return ImageInfo(state, None if width is None else int(width), None if height is None else int(height),
                     bool(animated))


def _image_values(image: Optional[ImageInfo]) -> tuple[Any, Any, Any, Any]:
    if image is None:
        return None, None, None, None
    return image.state, image.width, image.height, image.animated


_LOCAL_COLUMNS = ("media_id, user_id, created_ts, unused_expires_at, media_type, media_length, upload_name,"
                  " sha256, authenticated, image_state, image_width, image_height, image_animated")
_REMOTE_COLUMNS = ("server_name, media_id, media_type, media_length, upload_name, created_ts, sha256,"
                   " authenticated, image_state, image_width, image_height, image_animated")
_THUMBNAIL_COLUMNS = "box_width, box_height, method, animated, width, height, media_type, media_length"


def _local(row: tuple[Any, ...]) -> MediaInfo:
    return MediaInfo(
        media_id=row[0], origin=None, user_id=row[1], created_ts=int(row[2]),
        unused_expires_at=None if row[3] is None else int(row[3]), media_type=row[4],
        media_length=None if row[5] is None else int(row[5]), upload_name=row[6], sha256=row[7],
        authenticated=bool(row[8]), image=_image(row[9], row[10], row[11], row[12]),
    )


def _remote(row: tuple[Any, ...]) -> MediaInfo:
    return MediaInfo(
        media_id=row[1], origin=row[0], media_type=row[2], media_length=int(row[3]), upload_name=row[4],
        created_ts=int(row[5]), sha256=row[6], authenticated=bool(row[7]),
        image=_image(row[8], row[9], row[10], row[11]),
    )


def _thumbnail(row: tuple[Any, ...]) -> ThumbnailInfo:
    return ThumbnailInfo(int(row[0]), int(row[1]), row[2], bool(row[3]), int(row[4]), int(row[5]), row[6],
                         int(row[7]))


class MediaStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    # -- local media -------------------------------------------------------------

    async def store_local_media(
        self, *, media_id: str, user_id: str, media_type: str, media_length: int, upload_name: Optional[str],
        sha256: str, authenticated: bool, image: Optional[ImageInfo],
    ) -> None:
        """Record a completed direct upload."""
        now = self._clock.time_msec()

        def _txn(txn: Cursor) -> None:
            txn.execute(
                f"INSERT INTO local_media ({_LOCAL_COLUMNS}, uploaded_ts)"
                " VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (media_id, user_id, now, media_type, media_length, upload_name, sha256, authenticated,
                 *_image_values(image), now),
            )

        await self._db.run_interaction("store_local_media", _txn)

    async def create_pending_media(self, *, media_id: str, user_id: str, expires_at: int, authenticated: bool,
                                   max_pending: int) -> bool:
        """Reserve ``media_id`` for a later upload by ``user_id``.

        Returns False (and changes nothing) if the user already holds
        ``max_pending`` unexpired reservations. Otherwise the user's lapsed
        reservations are deleted on the way.
        """
        now = self._clock.time_msec()

        def _txn(txn: Cursor) -> bool:
            txn.execute(
                "SELECT COUNT(*) FROM local_media"
                " WHERE user_id = ? AND media_length IS NULL AND unused_expires_at >= ?",
                (user_id, now),
            )
            row = txn.fetchone()
            if row is not None and int(row[0]) >= max_pending:
                return False
            txn.execute(
                "DELETE FROM local_media WHERE user_id = ? AND media_length IS NULL AND unused_expires_at < ?",
                (user_id, now),
            )
            txn.execute(
                "INSERT INTO local_media (media_id, user_id, created_ts, unused_expires_at, authenticated)"
                " VALUES (?, ?, ?, ?, ?)",
                (media_id, user_id, now, expires_at, authenticated),
            )
            return True

        return await self._db.run_interaction("create_pending_media", _txn)

    async def complete_pending_media(
        self, *, media_id: str, media_type: str, media_length: int, upload_name: Optional[str], sha256: str,
        image: Optional[ImageInfo],
    ) -> bool:
        """Fill in a reserved id; False if it already has content (or is gone)."""
        now = self._clock.time_msec()

        def _txn(txn: Cursor) -> bool:
            txn.execute(
                "UPDATE local_media SET media_type = ?, media_length = ?, upload_name = ?, sha256 = ?,"
                " uploaded_ts = ?, unused_expires_at = NULL, image_state = ?, image_width = ?, image_height = ?,"
                " image_animated = ? WHERE media_id = ? AND media_length IS NULL",
                (media_type, media_length, upload_name, sha256, now, *_image_values(image), media_id),
            )
            return txn.rowcount > 0

        return await self._db.run_interaction("complete_pending_media", _txn)

    async def get_local_media(self, media_id: str) -> Optional[MediaInfo]:
        rows = await self._db.execute(
            "get_local_media", f"SELECT {_LOCAL_COLUMNS} FROM local_media WHERE media_id = ?", media_id
        )
        return _local(rows[0]) if rows else None

    # -- remote media ------------------------------------------------------------

    async def store_remote_media(
        self, *, server_name: str, media_id: str, media_type: str, media_length: int, upload_name: Optional[str],
        sha256: str, authenticated: bool, image: Optional[ImageInfo],
    ) -> None:
        now = self._clock.time_msec()

        def _txn(txn: Cursor) -> None:
            txn.execute(
                f"INSERT INTO remote_media_cache ({_REMOTE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (server_name, media_id) DO NOTHING",
                (server_name, media_id, media_type, media_length, upload_name, now, sha256, authenticated,
                 *_image_values(image)),
            )

        await self._db.run_interaction("store_remote_media", _txn)

    async def get_remote_media(self, server_name: str, media_id: str) -> Optional[MediaInfo]:
        rows = await self._db.execute(
            "get_remote_media",
            f"SELECT {_REMOTE_COLUMNS} FROM remote_media_cache WHERE server_name = ? AND media_id = ?",
            server_name, media_id,
        )
        return _remote(rows[0]) if rows else None

    # -- both ----------------------------------------------------------------------

    async def is_quarantined(self, server_name: str, media_id: str) -> bool:
        """Whether a server admin quarantined ``mxc://server_name/media_id`` (``media_quarantine``,
        written by the admin API)."""
        rows = await self._db.execute(
            "media_is_quarantined",
            "SELECT 1 FROM media_quarantine WHERE server_name = ? AND media_id = ?", server_name, media_id,
        )
        return bool(rows)

    async def set_image_info(self, origin: Optional[str], media_id: str, image: ImageInfo) -> None:
        """Remember what the thumbnailer found (for media stored before it looked)."""
        values = _image_values(image)
        if origin is None:
            await self._db.execute(
                "set_local_image_info",
                "UPDATE local_media SET image_state = ?, image_width = ?, image_height = ?, image_animated = ?"
                " WHERE media_id = ?",
                *values, media_id,
            )
        else:
            await self._db.execute(
                "set_remote_image_info",
                "UPDATE remote_media_cache SET image_state = ?, image_width = ?, image_height = ?,"
                " image_animated = ? WHERE server_name = ? AND media_id = ?",
                *values, origin, media_id,
            )

    # -- thumbnails ----------------------------------------------------------------

    async def get_thumbnail(
        self, server_name: str, media_id: str, box_width: int, box_height: int, method: str, animated: bool
    ) -> Optional[ThumbnailInfo]:
        rows = await self._db.execute(
            "get_thumbnail",
            f"SELECT {_THUMBNAIL_COLUMNS} FROM media_thumbnails WHERE server_name = ? AND media_id = ?"
            " AND box_width = ? AND box_height = ? AND method = ? AND animated = ?",
            server_name, media_id, box_width, box_height, method, animated,
        )
        return _thumbnail(rows[0]) if rows else None

    async def get_thumbnails(self, server_name: str, media_id: str) -> list[ThumbnailInfo]:
        rows = await self._db.execute(
            "get_thumbnails",
            f"SELECT {_THUMBNAIL_COLUMNS} FROM media_thumbnails WHERE server_name = ? AND media_id = ?"
            " ORDER BY box_width, box_height, method, animated",
            server_name, media_id,
        )
        return [_thumbnail(r) for r in rows]

    async def store_thumbnail(self, server_name: str, media_id: str, thumbnail: ThumbnailInfo) -> None:
        """Record a generated thumbnail; a concurrent duplicate replaces the row (same file name)."""
        t = thumbnail
        now = self._clock.time_msec()

        def _txn(txn: Cursor) -> None:
            txn.execute(
                f"INSERT INTO media_thumbnails (server_name, media_id, {_THUMBNAIL_COLUMNS}, created_ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (server_name, media_id, box_width, box_height, method, animated) DO UPDATE SET"
                " width = excluded.width, height = excluded.height, media_type = excluded.media_type,"
                " media_length = excluded.media_length, created_ts = excluded.created_ts",
                (server_name, media_id, t.box_width, t.box_height, t.method, t.animated, t.width, t.height,
                 t.media_type, t.media_length, now),
            )

        await self._db.run_interaction("store_thumbnail", _txn)
