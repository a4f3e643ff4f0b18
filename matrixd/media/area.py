"""The media repository's components for a process role, built with explicit arguments."""

from __future__ import annotations

import logging
from typing import Any, Optional

import attrs

from matrixd.config.media import MediaConfig
from matrixd.config.ratelimiting import RatelimitSettings
from matrixd.handlers.ratelimit import RateLimitConfig, Ratelimiter
from matrixd.media.blocking import BlockingRunner
from matrixd.media.remote import RemoteMediaFetcher, UnavailableRemoteMediaFetcher
from matrixd.media.repository import MediaRepository
from matrixd.media.storage import FilesystemMediaStorage
from matrixd.media.thumbnails import ThumbnailProvider
from matrixd.storage.database import Database
from matrixd.storage.media import MediaStore
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)


@attrs.define
class MediaArea:
    store: MediaStore
    storage: FilesystemMediaStorage
    thumbnails: ThumbnailProvider
    repository: MediaRepository


def build_media_area(
    *,
    config: MediaConfig,
    server_name: str,
    reactor: Any,
    clock: Clock,
    db: Database,
    rc_media_create: RatelimitSettings,
    remote: Optional[RemoteMediaFetcher] = None,
) -> MediaArea:
    """Wire the media repository. ``remote``: how to fetch other servers' media
    (default: not possible, 502)."""
    if config.url_preview_enabled:
        logger.warning("url_preview_enabled is set but URL previews are not supported yet;"
                       " /preview_url will answer 404 M_UNRECOGNIZED")
    blocking = BlockingRunner(reactor)
    store = MediaStore(db, clock)
    storage = FilesystemMediaStorage(config.media_store_path, blocking)
    thumbnails = ThumbnailProvider(
        server_name=server_name, config=config, store=store, storage=storage, blocking=blocking
    )
    repository = MediaRepository(
        clock=clock, server_name=server_name, config=config, store=store, storage=storage, thumbnails=thumbnails,
        remote=remote or UnavailableRemoteMediaFetcher(),
        create_ratelimiter=Ratelimiter(clock, RateLimitConfig(rc_media_create.per_second,
                                                               rc_media_create.burst_count)),
    )
    return MediaArea(store=store, storage=storage, thumbnails=thumbnails, repository=repository)
