"""Thumbnails: choosing the size to serve, generating it once, caching it.

Static thumbnails of the configured sizes are generated when an image is
uploaded (``pregenerate``); anything else (remote media, animated thumbnails,
``dynamic_thumbnails`` sizes, a full-size re-encode) is generated on first
request and stored like the others. Pillow runs on the thread pool.
"""

from __future__ import annotations

import logging
from typing import IO, Optional

import attrs

from matrixd.api.errors import Codes, MatrixError, NotFoundError
from matrixd.config.media import MediaConfig, ThumbnailSize
from matrixd.media import thumbnailer
from matrixd.media.blocking import BlockingRunner
from matrixd.media.headers import base_media_type
from matrixd.media.sizing import ThumbnailRequest, choose_thumbnail, is_full_size, thumbnail_file_name
from matrixd.media.storage import FileLocation, MediaStorage
from matrixd.media.thumbnailer import ImageTooLargeError, NotAnImageError, RenderedThumbnail
from matrixd.storage.media import ImageInfo, MediaInfo, MediaStore, ThumbnailInfo
from matrixd.util.linearizer import Linearizer

logger = logging.getLogger(__name__)

# Originals of these types may be served as their own "thumbnail" (the spec's
# thumbnail Content-Type list); others are re-encoded at full size.
_SERVABLE_ORIGINAL_TYPES = {
    "image/jpeg": "jpg", "image/png": "png", "image/apng": "png", "image/gif": "gif", "image/webp": "webp",
}


@attrs.frozen(slots=True)
class ThumbnailFile:
    """A thumbnail ready to send: where it is and how to label it."""

    location: FileLocation
    media_type: str
    length: Optional[int]

    @property
    def filename(self) -> str:
        return "thumbnail." + _SERVABLE_ORIGINAL_TYPES.get(self.media_type, "png")


class ThumbnailProvider:
    def __init__(self, *, server_name: str, config: MediaConfig, store: MediaStore, storage: MediaStorage,
                 blocking: BlockingRunner) -> None:
        self._server_name = server_name
        self._config = config
        self._store = store
        self._storage = storage
        self._blocking = blocking
        self._generating = Linearizer("thumbnail")

    # -- at upload ---------------------------------------------------------------

    async def examine(self, location: FileLocation, media_type: str) -> Optional[ImageInfo]:
        """What kind of image the stored file is (None if the file is missing).

        Only files declared as ``image/*`` are opened: declared types decide what
        we thumbnail, and other files never reach an image decoder.
        """
        if not base_media_type(media_type).startswith("image/"):
            return ImageInfo(thumbnailer.NOT_IMAGE)
        source = self._storage.open(location)
        if source is None:
            return None
        with source:
            probe = await self._blocking.run(thumbnailer.probe_image, source)
        return ImageInfo(probe.state, probe.width, probe.height, probe.animated)

    async def pregenerate(self, media: MediaInfo) -> None:
        """Generate the configured static thumbnails of a new image; failures are only logged."""
        image = media.image
        if image is None or image.state != thumbnailer.IMAGE or image.width is None or image.height is None:
            return
        if image.width * image.height > self._config.max_image_pixels:
            return
        sizes = [s for s in self._config.thumbnail_sizes if not is_full_size(image.width, image.height, s)]
        if not sizes:
            return
        source = self._storage.open(_content_location(media))
        if source is None:
            return
        try:
            with source:
                rendered = await self._blocking.run(
                    thumbnailer.render_thumbnails, source, sizes, self._config.max_image_pixels
                )
            for size, thumb in rendered:
                await self._save(media, size, False, thumb)
        except thumbnailer.ThumbnailError as e:
            logger.info("no thumbnails for %s: %s", media.media_id, e)
        except Exception:
            logger.exception("generating thumbnails of %s failed", media.media_id)

    # -- on request ----------------------------------------------------------------

    async def get_thumbnail(self, media: MediaInfo, request: ThumbnailRequest) -> tuple[ThumbnailFile, IO[bytes]]:
        """The thumbnail to send for ``request``, and the file opened for reading.

        Raises:
            MatrixError: 400 ``M_UNKNOWN`` if the media is not an image we can
                thumbnail; 413 ``M_TOO_LARGE`` (502 for remote media) if it has
                more than ``max_image_pixels`` pixels; 404 if its file is gone.
        """
        image = media.image
        if image is None:
            image = await self.examine(_content_location(media), media.media_type or "")
            if image is None:
                raise NotFoundError("Media file not found")
            await self._store.set_image_info(media.origin, media.media_id, image)
        if image.state == thumbnailer.TOO_LARGE or (
            image.state == thumbnailer.IMAGE and image.width is not None and image.height is not None
            and image.width * image.height > self._config.max_image_pixels
        ):
            raise self._too_large(media)
        if image.state != thumbnailer.IMAGE or image.width is None or image.height is None:
            raise MatrixError(400, "Cannot generate thumbnails for the requested content", Codes.UNKNOWN)

        animated = bool(request.animated) and image.animated
        size = choose_thumbnail(
            image.width, image.height, request, self._config.thumbnail_sizes, self._config.dynamic_thumbnails
        )
        if size is None:
            original_type = base_media_type(media.media_type or "")
            if original_type in _SERVABLE_ORIGINAL_TYPES and animated == image.animated:
                location = _content_location(media)
                source = self._storage.open(location)
                if source is None:
                    raise NotFoundError("Media file not found")
                return ThumbnailFile(location, original_type, media.media_length), source
            # Full size, re-encoded: a type clients can show, and static unless asked otherwise.
            size = ThumbnailSize(image.width, image.height, "scale")
        return await self._get_or_generate(media, size, animated)

    async def _get_or_generate(
        self, media: MediaInfo, size: ThumbnailSize, animated: bool
    ) -> tuple[ThumbnailFile, IO[bytes]]:
        origin = media.origin or self._server_name
        location = _thumbnail_location(media, size, animated)
        async with self._generating.queue((origin, media.media_id, location.thumbnail)):
            row = await self._store.get_thumbnail(origin, media.media_id, size.width, size.height, size.method,
                                                  animated)
            if row is not None:
                source = self._storage.open(location)
                if source is not None:
                    return ThumbnailFile(location, row.media_type, row.media_length), source
                logger.warning("thumbnail %s of %s is recorded but its file is gone; regenerating",
                               location.thumbnail, media.media_id)
            rendered = await self._render(media, size, animated)
            await self._save(media, size, animated, rendered)
        source = self._storage.open(location)
        if source is None:
            raise NotFoundError("Thumbnail file not found")
        return ThumbnailFile(location, rendered.media_type, len(rendered.data)), source

    async def _render(self, media: MediaInfo, size: ThumbnailSize, animated: bool) -> RenderedThumbnail:
        max_pixels = self._config.max_image_pixels
        source = self._storage.open(_content_location(media))
        if source is None:
            raise NotFoundError("Media file not found")
        try:
            with source:
                if animated:
                    moving = await self._blocking.run(thumbnailer.render_animated_thumbnail, source, size, max_pixels)
                    if moving is not None:
                        return moving
                rendered = await self._blocking.run(thumbnailer.render_thumbnails, source, [size], max_pixels)
                return rendered[0][1]
        except ImageTooLargeError:
            raise self._too_large(media) from None
        except NotAnImageError as e:
            logger.info("cannot thumbnail %s: %s", media.media_id, e)
            raise MatrixError(400, "Cannot generate thumbnails for the requested content", Codes.UNKNOWN) from None

    async def _save(self, media: MediaInfo, size: ThumbnailSize, animated: bool, thumb: RenderedThumbnail) -> None:
        location = _thumbnail_location(media, size, animated)
        stored = await self._storage.store_bytes(thumb.data, location)
        await self._store.store_thumbnail(
            media.origin or self._server_name,
            media.media_id,
            ThumbnailInfo(size.width, size.height, size.method, animated, thumb.width, thumb.height,
                          thumb.media_type, stored.length),
        )

    @staticmethod
    def _too_large(media: MediaInfo) -> MatrixError:
        # The spec: 413 for local content, 502 for remote content.
        return MatrixError(502 if media.origin is not None else 413, "Content is too large to thumbnail",
                           Codes.TOO_LARGE)


def _content_location(media: MediaInfo) -> FileLocation:
    return FileLocation(media.media_id, origin=media.origin)


def _thumbnail_location(media: MediaInfo, size: ThumbnailSize, animated: bool) -> FileLocation:
    return FileLocation(media.media_id, origin=media.origin, thumbnail=thumbnail_file_name(size, animated))
