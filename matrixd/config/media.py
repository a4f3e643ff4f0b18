"""The media repository section: storage, limits, thumbnails, URL previews."""

from __future__ import annotations

import ipaddress

import attrs

from matrixd.api.errors import ConfigError
from matrixd.config._reader import ConfigReader

# Never fetched for URL previews unless whitelisted: loopback, private, link-local,
# carrier-grade NAT, multicast, reserved and documentation ranges.
DEFAULT_URL_PREVIEW_IP_RANGE_BLACKLIST = (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
    "192.0.0.0/24", "169.254.0.0/16", "192.88.99.0/24", "198.18.0.0/15", "192.0.2.0/24",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "0.0.0.0/8",
    "::1/128", "fe80::/10", "fc00::/7", "2001:db8::/32", "ff00::/8", "fec0::/10", "::/128",
)


@attrs.frozen(slots=True)
class ThumbnailSize:
    width: int
    height: int
    # "crop" fills the box exactly; "scale" fits inside it keeping the aspect ratio.
    method: str


# The sizes the spec suggests servers pre-generate (content repository, thumbnails).
DEFAULT_THUMBNAIL_SIZES = (
    ThumbnailSize(32, 32, "crop"),
    ThumbnailSize(96, 96, "crop"),
    ThumbnailSize(320, 240, "scale"),
    ThumbnailSize(640, 480, "scale"),
    ThumbnailSize(800, 600, "scale"),
)


@attrs.frozen(slots=True)
class MediaConfig:
    """Keys: ``enable_media_repo``, ``media_store_path``, ``max_upload_size``,
    ``max_image_pixels``, ``dynamic_thumbnails``, ``thumbnail_sizes``,
    ``enable_authenticated_media``, ``url_preview_enabled``,
    ``url_preview_ip_range_blacklist``, ``url_preview_ip_range_whitelist``,
    ``max_spider_size``, ``max_pending_media_uploads``, ``unused_expiration_time``.

    ``enable_authenticated_media`` freezes the deprecated unauthenticated
    ``/_matrix/media/*/download|thumbnail`` endpoints for media stored while it is
    on (the spec's "freeze"); the authenticated ``/_matrix/client/v1/media``
    endpoints serve everything either way.
    """

    enable_media_repo: bool = True
    media_store_path: str = "media_store"
    max_upload_size: int = 50 * 1024 * 1024
    max_image_pixels: int = 32 * 1024 * 1024
    dynamic_thumbnails: bool = False
    thumbnail_sizes: tuple[ThumbnailSize, ...] = DEFAULT_THUMBNAIL_SIZES
    enable_authenticated_media: bool = True
    url_preview_enabled: bool = False
    url_preview_ip_range_blacklist: tuple[str, ...] = DEFAULT_URL_PREVIEW_IP_RANGE_BLACKLIST
    url_preview_ip_range_whitelist: tuple[str, ...] = ()
    max_spider_size: int = 10 * 1024 * 1024
    # Async uploads (POST /_matrix/media/v1/create): how many created-but-not-yet-
    # uploaded ids one user may hold, and how long an unused id stays valid.
    max_pending_media_uploads: int = 5
    unused_expiration_time_ms: int = 24 * 60 * 60 * 1000

    @classmethod
    def parse(cls, r: ConfigReader) -> "MediaConfig":
        sizes = []
        if r.has("thumbnail_sizes"):
            for t in r.section_list("thumbnail_sizes"):
                method = t.string("method", "scale")
                if method not in ("crop", "scale"):
                    raise ConfigError(t.key("method"), f"must be crop or scale, not {method!r}")
                assert method is not None
                sizes.append(
                    ThumbnailSize(
                        t.integer("width", required=True, min_value=1),
                        t.integer("height", required=True, min_value=1),
                        method,
                    )
                )
        else:
            r.raw("thumbnail_sizes")
        blacklist = r.string_list("url_preview_ip_range_blacklist", DEFAULT_URL_PREVIEW_IP_RANGE_BLACKLIST)
        whitelist = r.string_list("url_preview_ip_range_whitelist", ())
        for key, ranges in (("url_preview_ip_range_blacklist", blacklist), ("url_preview_ip_range_whitelist", whitelist)):
            for i, cidr in enumerate(ranges):
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    raise ConfigError(f"{key}[{i}]", f"{cidr!r} is not an IP network") from None
        media_store_path = r.string("media_store_path", "media_store")
        if not media_store_path:
            raise ConfigError("media_store_path", "must not be empty")
        return cls(
            enable_media_repo=r.boolean("enable_media_repo", True),
            media_store_path=media_store_path,
            max_upload_size=r.size("max_upload_size", "50M"),
            max_image_pixels=r.size("max_image_pixels", "32M"),
            dynamic_thumbnails=r.boolean("dynamic_thumbnails", False),
            thumbnail_sizes=tuple(sizes) if sizes else DEFAULT_THUMBNAIL_SIZES,
            enable_authenticated_media=r.boolean("enable_authenticated_media", True),
            url_preview_enabled=r.boolean("url_preview_enabled", False),
            url_preview_ip_range_blacklist=blacklist,
            url_preview_ip_range_whitelist=whitelist,
            max_spider_size=r.size("max_spider_size", "10M"),
            max_pending_media_uploads=r.integer("max_pending_media_uploads", 5, min_value=1),
            unused_expiration_time_ms=_positive_duration(r, "unused_expiration_time", "24h"),
        )


def _positive_duration(r: ConfigReader, name: str, default: str) -> int:
    value = r.duration_ms(name, default)
    assert value is not None
    if value <= 0:
        raise ConfigError(r.key(name), "must be a positive duration")
    return value
