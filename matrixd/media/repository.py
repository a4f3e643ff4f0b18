"""Uploads and lookups of the media repository (the handler behind the media servlets).

* ``upload``: ``POST /upload``, a new media id with content.
* ``create_pending`` + ``upload_pending``: ``POST /create`` reserves an id for
  its creator, ``PUT /upload/{server}/{id}`` fills it once.
* ``get_media``: what ``/download`` and ``/thumbnail`` serve: local media
  (waiting up to ``timeout_ms`` for a pending upload, then 504
  ``M_NOT_YET_UPLOADED``) or remote media, fetched once through the
  ``RemoteMediaFetcher`` and cached.

Request bodies are already spooled to a temporary file by the HTTP layer
(bounded by the listener's limit); they are copied into the store on the
thread pool, counting and hashing as they go.
"""

from __future__ import annotations

import logging
from typing import IO, Optional

from twisted.internet import defer

from matrixd.api.errors import Codes, InvalidParamError, MatrixError, NotFoundError, LimitExceededError
from matrixd.config.media import MediaConfig
from matrixd.handlers.ratelimit import Ratelimiter
from matrixd.media.headers import DEFAULT_MEDIA_TYPE, is_valid_media_type
from matrixd.media.ids import generate_media_id, is_valid_media_id, is_valid_media_origin, mxc_uri
from matrixd.media.remote import RemoteMediaFetcher
from matrixd.media.storage import FileLocation, FileTooLargeError, MediaStorage, MediaWriter, StoredFile
from matrixd.media.thumbnails import ThumbnailProvider
from matrixd.storage.media import MediaInfo, MediaStore
from matrixd.types import Requester
from matrixd.util.clock import Clock
from matrixd.util.linearizer import Linearizer

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MS = 20_000
MAX_TIMEOUT_MS = 120_000
# A download waiting for an upload on another process notices it within this.
PENDING_POLL_SECONDS = 1.0
MAX_UPLOAD_NAME_LENGTH = 1024


class _Waiter:
    """One download waiting for an upload: fires on notify or after its delay."""

    def __init__(self, clock: Clock, delay: float) -> None:
        self.deferred: defer.Deferred[None] = defer.Deferred()
        self._call = clock.call_later(delay, self.fire)

    def fire(self) -> None:
        if self._call.active():
            self._call.cancel()
        if not self.deferred.called:
            self.deferred.callback(None)


class _UploadWaiters:
    """In-process wake-ups for downloads of media whose async upload is pending."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._waiting: dict[str, set[_Waiter]] = {}

    def register(self, media_id: str, delay: float) -> _Waiter:
        waiter = _Waiter(self._clock, delay)
        self._waiting.setdefault(media_id, set()).add(waiter)
        return waiter

    def discard(self, media_id: str, waiter: _Waiter) -> None:
        waiter.fire()
        waiters = self._waiting.get(media_id)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._waiting[media_id]

    def notify(self, media_id: str) -> None:
        for waiter in self._waiting.pop(media_id, set()):
            waiter.fire()


class _BoundedSink:
    """A writer that refuses to grow past ``max_size`` (remote media over the limit is 502)."""

    def __init__(self, writer: MediaWriter, max_size: int) -> None:
        self._writer = writer
        self._max_size = max_size

    def write(self, data: bytes) -> None:
        if self._writer.length + len(data) > self._max_size:
            raise MatrixError(502, "Remote content is too large to serve", Codes.TOO_LARGE)
        self._writer.write(data)


def _too_large(max_size: int) -> MatrixError:
    return MatrixError(413, f"Cannot upload files larger than {max_size} bytes", Codes.TOO_LARGE)


def _body_length(body: IO[bytes]) -> int:
    body.seek(0, 2)
    length = body.tell()
    body.seek(0)
    return length


class MediaRepository:
    def __init__(
        self,
        *,
        clock: Clock,
        server_name: str,
        config: MediaConfig,
        store: MediaStore,
        storage: MediaStorage,
        thumbnails: ThumbnailProvider,
        remote: RemoteMediaFetcher,
        create_ratelimiter: Ratelimiter,
    ) -> None:
        self._clock = clock
        self._server_name = server_name
        self._config = config
        self._store = store
        self._storage = storage
        self._thumbnails = thumbnails
        self._remote = remote
        self._create_ratelimiter = create_ratelimiter
        self._waiters = _UploadWaiters(clock)
        self._upload_lock = Linearizer("media_upload")
        self._remote_lock = Linearizer("remote_media")

    def set_remote(self, remote: RemoteMediaFetcher) -> None:
        """Fetch other servers' media through ``remote`` (bound once federation is built)."""
        self._remote = remote

    @property
    def server_name(self) -> str:
        return self._server_name

    # -- uploads ---------------------------------------------------------------------

    def _check_upload(self, body: IO[bytes], media_type: Optional[str], upload_name: Optional[str]) -> str:
        """The media type to store; raises 413 / 400 for bodies and headers we refuse."""
        if _body_length(body) > self._config.max_upload_size:
            raise _too_large(self._config.max_upload_size)
        if upload_name is not None and len(upload_name) > MAX_UPLOAD_NAME_LENGTH:
            raise InvalidParamError(f"filename is longer than {MAX_UPLOAD_NAME_LENGTH} characters")
        if upload_name is not None and "\x00" in upload_name:
            raise InvalidParamError("filename must not contain NUL characters")
        if not media_type:
            return DEFAULT_MEDIA_TYPE
        if not is_valid_media_type(media_type):
            raise InvalidParamError(f"Content-Type {media_type[:100]!r} is not a valid media type")
        return media_type

    async def _store_body(self, body: IO[bytes], location: FileLocation) -> StoredFile:
        try:
            return await self._storage.store_file(body, location, self._config.max_upload_size)
        except FileTooLargeError:
            raise _too_large(self._config.max_upload_size) from None

    async def upload(
        self, requester: Requester, body: IO[bytes], media_type: Optional[str], upload_name: Optional[str]
    ) -> str:
        """Store a new upload; returns its ``mxc://`` URI."""
        self._create_ratelimiter.ratelimit(requester.user_id)
        media_type = self._check_upload(body, media_type, upload_name)
        media_id = generate_media_id()
        location = FileLocation(media_id)
        stored = await self._store_body(body, location)
        image = await self._thumbnails.examine(location, media_type)
        await self._store.store_local_media(
            media_id=media_id, user_id=requester.user_id, media_type=media_type, media_length=stored.length,
            upload_name=upload_name or None, sha256=stored.sha256,
            authenticated=self._config.enable_authenticated_media, image=image,
        )
        logger.info("%s uploaded %s (%d bytes, %s)", requester.user_id, media_id, stored.length, media_type)
        media = await self._store.get_local_media(media_id)
        if media is not None:
            await self._thumbnails.pregenerate(media)
        return mxc_uri(self._server_name, media_id)

    async def create_pending(self, requester: Requester) -> tuple[str, int]:
        """Reserve a media id for a later ``upload_pending``: (``mxc://`` URI, expiry ms).

        Raises:
            LimitExceededError: over ``rc_media_create``, or the user already has
                ``max_pending_media_uploads`` unused reservations.
        """
        self._create_ratelimiter.ratelimit(requester.user_id)
        media_id = generate_media_id()
        expires_at = self._clock.time_msec() + self._config.unused_expiration_time_ms
        created = await self._store.create_pending_media(
            media_id=media_id, user_id=requester.user_id, expires_at=expires_at,
            authenticated=self._config.enable_authenticated_media,
            max_pending=self._config.max_pending_media_uploads,
        )
        if not created:
            raise LimitExceededError(msg="Too many pending media uploads")
        return mxc_uri(self._server_name, media_id), expires_at

    async def upload_pending(
        self, requester: Requester, server_name: str, media_id: str, body: IO[bytes],
        media_type: Optional[str], upload_name: Optional[str],
    ) -> None:
        """Fill an id reserved by ``create_pending``.

        Raises:
            NotFoundError: not an id of ours that ``/create`` reserved, or it lapsed.
            AuthError-style 403 ``M_FORBIDDEN``: reserved by another user.
            MatrixError: 409 ``M_CANNOT_OVERWRITE_MEDIA`` if it already has content.
        """
        if server_name != self._server_name or not is_valid_media_id(media_id):
            raise NotFoundError("Unknown media ID")
        async with self._upload_lock.queue(media_id):
            media = await self._store.get_local_media(media_id)
            if media is None:
                raise NotFoundError("Unknown media ID")
            if media.user_id != requester.user_id:
                raise MatrixError(403, "This media ID was created by another user", Codes.FORBIDDEN)
            if media.uploaded:
                raise MatrixError(409, "Media already uploaded", Codes.CANNOT_OVERWRITE_MEDIA)
            if media.unused_expires_at is not None and media.unused_expires_at < self._clock.time_msec():
                raise NotFoundError("This media ID has expired")
            media_type = self._check_upload(body, media_type, upload_name)
            location = FileLocation(media_id)
            stored = await self._store_body(body, location)
            image = await self._thumbnails.examine(location, media_type)
            completed = await self._store.complete_pending_media(
                media_id=media_id, media_type=media_type, media_length=stored.length,
                upload_name=upload_name or None, sha256=stored.sha256, image=image,
            )
            if not completed:
                raise MatrixError(409, "Media already uploaded", Codes.CANNOT_OVERWRITE_MEDIA)
        logger.info("%s uploaded pending %s (%d bytes, %s)", requester.user_id, media_id, stored.length, media_type)
        self._waiters.notify(media_id)
        media = await self._store.get_local_media(media_id)
        if media is not None:
            await self._thumbnails.pregenerate(media)

    # -- lookups ---------------------------------------------------------------------

    async def get_media(
        self, server_name: str, media_id: str, *, timeout_ms: int, allow_remote: bool, authenticated: bool
    ) -> MediaInfo:
        """The media behind ``mxc://server_name/media_id``, with content.

        ``authenticated``: the request came through the authenticated
        endpoints; media stored during the freeze is 404 otherwise.

        Raises:
            MatrixError: 400 ``M_INVALID_PARAM`` for a malformed server name or
                media id; 404 ``M_NOT_FOUND`` (also for quarantined media); 504 ``M_NOT_YET_UPLOADED``; and
                the fetcher's 502/504 for remote media.
        """
        if not is_valid_media_origin(server_name):
            raise InvalidParamError(f"{server_name[:300]!r} is not a valid server name")
        if not is_valid_media_id(media_id):
            raise InvalidParamError("Media IDs may only contain A-Z, a-z, 0-9, '_' and '-'")
        timeout_ms = max(0, min(timeout_ms, MAX_TIMEOUT_MS))
        if await self._store.is_quarantined(server_name, media_id):
            # Quarantined media (and so its thumbnails) is served to nobody, local or cached remote.
            raise NotFoundError("Media not found")
        if server_name == self._server_name:
            media = await self._get_local(media_id, timeout_ms)
        else:
            media = await self._get_remote(server_name, media_id, timeout_ms, allow_remote, authenticated)
        if media.authenticated and not authenticated:
            raise NotFoundError("Media is only available through the authenticated media endpoints")
        return media

    async def _get_local(self, media_id: str, timeout_ms: int) -> MediaInfo:
        deadline = self._clock.time() + timeout_ms / 1000
        while True:
            remaining = deadline - self._clock.time()
            # Registered before the read, so an upload finishing meanwhile still wakes us.
            waiter = self._waiters.register(media_id, max(0.0, min(remaining, PENDING_POLL_SECONDS)))
            try:
                media = await self._store.get_local_media(media_id)
                if media is None:
                    raise NotFoundError("Media not found")
                if media.uploaded:
                    return media
                if media.unused_expires_at is not None and media.unused_expires_at < self._clock.time_msec():
                    raise NotFoundError("Media not found")
                if remaining <= 0:
                    raise MatrixError(504, "Content has not yet been uploaded", Codes.NOT_YET_UPLOADED)
                await waiter.deferred
            finally:
                self._waiters.discard(media_id, waiter)

    async def _get_remote(
        self, server_name: str, media_id: str, timeout_ms: int, allow_remote: bool, authenticated: bool
    ) -> MediaInfo:
        media = await self._store.get_remote_media(server_name, media_id)
        if media is not None:
            return media
        if not allow_remote:
            raise NotFoundError("Remote media is not cached here and allow_remote is false")
        if not authenticated and self._config.enable_authenticated_media:
            # Whatever we fetched now would be frozen for this endpoint anyway.
            raise NotFoundError("Media is only available through the authenticated media endpoints")
        async with self._remote_lock.queue((server_name, media_id)):
            media = await self._store.get_remote_media(server_name, media_id)
            if media is not None:
                return media
            await self._fetch_remote(server_name, media_id, timeout_ms)
            media = await self._store.get_remote_media(server_name, media_id)
        if media is None:
            raise NotFoundError("Media not found")
        return media

    async def _fetch_remote(self, server_name: str, media_id: str, timeout_ms: int) -> None:
        location = FileLocation(media_id, origin=server_name)
        writer = self._storage.open_writer(location)
        max_size = self._config.max_upload_size
        try:
            meta = await self._remote.fetch_media(
                server_name, media_id, _BoundedSink(writer, max_size), max_size=max_size, timeout_ms=timeout_ms
            )
            stored = await writer.commit()
        except BaseException:
            await writer.abort()
            raise
        media_type = meta.media_type if is_valid_media_type(meta.media_type) else DEFAULT_MEDIA_TYPE
        upload_name = meta.upload_name
        if upload_name is not None and (len(upload_name) > MAX_UPLOAD_NAME_LENGTH or "\x00" in upload_name):
            upload_name = None
        image = await self._thumbnails.examine(location, media_type)
        await self._store.store_remote_media(
            server_name=server_name, media_id=media_id, media_type=media_type, media_length=stored.length,
            upload_name=upload_name, sha256=stored.sha256,
            authenticated=self._config.enable_authenticated_media, image=image,
        )
        logger.info("cached remote media %s/%s (%d bytes)", server_name, media_id, stored.length)

    def open_content(self, media: MediaInfo) -> IO[bytes]:
        """The media's file, opened for reading (the caller closes it)."""
        source = self._storage.open(FileLocation(media.media_id, origin=media.origin))
        if source is None:
            logger.error("media %s/%s is recorded but its file is missing", media.origin or "local", media.media_id)
            raise NotFoundError("Media file not found")
        return source
