"""The Pillow work of the media repository: probing images and rendering thumbnails.

Everything here blocks (decoding a large image takes a while): call it through
``BlockingRunner`` so it runs on the thread pool, never on the reactor.

Uploaded files are untrusted input to image decoders, so only a few common
formats are ever opened, and the pixel count is checked from the header
before anything is decoded (the "decompression bomb" guard, ``max_image_pixels``).
"""

from __future__ import annotations

import io
import logging
import math
import functools
from typing import IO, TYPE_CHECKING, Optional, Sequence

import attrs

from matrixd.config.media import ThumbnailSize
from matrixd.media.sizing import crop_region, output_size

if TYPE_CHECKING:
    from PIL import Image

# Pillow (a few MiB resident) is imported by the functions that use it, so a
# server that never thumbnails does not carry it.

logger = logging.getLogger(__name__)

# The decoders we expose to uploaded bytes; everything else is "not an image".
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")

IMAGE = "image"
NOT_IMAGE = "not_image"
TOO_LARGE = "too_large"

_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})
JPEG_QUALITY = 80


@functools.lru_cache(maxsize=None)
def _webp_available() -> bool:
    from PIL import features

    return bool(features.check("webp"))


class ThumbnailError(Exception):
    """The image cannot be thumbnailed."""


class NotAnImageError(ThumbnailError):
    """Not an image in a format we decode (or a corrupt one)."""


class ImageTooLargeError(ThumbnailError):
    """More pixels than ``max_image_pixels``: refusing to decode."""


@attrs.frozen(slots=True)
class ImageProbe:
    """What a header read tells us; width/height are as displayed (EXIF rotation applied)."""

    state: str  # IMAGE, NOT_IMAGE or TOO_LARGE
    width: Optional[int] = None
    height: Optional[int] = None
    animated: bool = False


@attrs.frozen(slots=True)
class RenderedThumbnail:
    data: bytes
    media_type: str
    width: int
    height: int
    animated: bool


def _open(source: IO[bytes]) -> Image.Image:
    from PIL import Image

    source.seek(0)
    try:
        return Image.open(source, formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(str(e)) from None
    except Exception as e:  # decoders raise all sorts on malformed input
        raise NotAnImageError(f"{type(e).__name__}: {e}") from None


def _logical_size(im: Image.Image) -> tuple[int, int]:
    width, height = im.size
    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION)
    except Exception:
        orientation = None
    if orientation in _TRANSPOSED_ORIENTATIONS:
        return height, width
    return width, height


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(f"{width}x{height} is more than {max_pixels} pixels")


def probe_image(source: IO[bytes]) -> ImageProbe:
    """Identify ``source`` from its header; never decodes pixel data."""
    try:
        with _open(source) as im:
            width, height = _logical_size(im)
            animated = bool(getattr(im, "is_animated", False))
    except ImageTooLargeError:
        return ImageProbe(TOO_LARGE)
    except NotAnImageError as e:
        logger.debug("not an image we thumbnail: %s", e)
        return ImageProbe(NOT_IMAGE)
    except Exception as e:
        logger.debug("image probe failed: %s", e)
        return ImageProbe(NOT_IMAGE)
    if width < 1 or height < 1:
        return ImageProbe(NOT_IMAGE)
    return ImageProbe(IMAGE, width, height, animated)


def _normalise_mode(im: Image.Image, jpeg: bool) -> Image.Image:
    if jpeg:
        return im if im.mode in ("RGB", "L") else im.convert("RGB")
    if im.mode in ("RGB", "RGBA", "L", "LA"):
        return im
    return im.convert("RGBA")


def _encode(im: Image.Image, jpeg: bool) -> tuple[bytes, str]:
    buf = io.BytesIO()
    if jpeg:
        im.save(buf, format="JPEG", quality=JPEG_QUALITY)
        return buf.getvalue(), "image/jpeg"
    im.save(buf, format="PNG")
    return buf.getvalue(), "image/png"


def _scaled_region(region: tuple[int, int, int, int], sx: float, sy: float) -> tuple[float, float, float, float]:
    left, top, right, bottom = region
    return left * sx, top * sy, right * sx, bottom * sy


def render_thumbnails(
    source: IO[bytes], sizes: Sequence[ThumbnailSize], max_pixels: int
) -> list[tuple[ThumbnailSize, RenderedThumbnail]]:
    """Static thumbnails of ``source`` for every size, decoding the image once.

    JPEG sources give JPEG thumbnails (decoded at a reduced scale when that
    is enough); everything else gives PNG, keeping transparency. Animated
    sources contribute their first frame.

    Raises:
        NotAnImageError, ImageTooLargeError.
    """
    if not sizes:
        return []
    from PIL import Image, ImageOps

    with _open(source) as im:
        width, height = _logical_size(im)
        _check_pixels(width, height, max_pixels)
        jpeg = im.format == "JPEG"
        try:
            if jpeg:
                # Let the JPEG decoder skip detail we are about to throw away.
                scale = 0.0
                for size in sizes:
                    out_w, _ = output_size(width, height, size)
                    left, _t, right, _b = _region(width, height, size)
                    scale = max(scale, out_w / (right - left))
                raw_w, raw_h = im.size
                im.draft("RGB", (math.ceil(raw_w * scale), math.ceil(raw_h * scale)))
            upright = ImageOps.exif_transpose(im)
            frame = _normalise_mode(upright, jpeg)
            sx, sy = frame.width / width, frame.height / height
            results = []
            for size in sizes:
                out_w, out_h = output_size(width, height, size)
                box = _scaled_region(_region(width, height, size), sx, sy)
                thumb = frame.resize((out_w, out_h), Image.Resampling.LANCZOS, box=box)
                data, media_type = _encode(thumb, jpeg)
                results.append((size, RenderedThumbnail(data, media_type, out_w, out_h, False)))
        except (ThumbnailError, MemoryError):
            raise
        except Exception as e:  # truncated or corrupt pixel data
            raise NotAnImageError(f"{type(e).__name__}: {e}") from None
    return results


def _region(width: int, height: int, size: ThumbnailSize) -> tuple[int, int, int, int]:
    if size.method == "crop":
        return crop_region(width, height, size.width, size.height)
    return 0, 0, width, height


def render_animated_thumbnail(source: IO[bytes], size: ThumbnailSize, max_pixels: int) -> Optional[RenderedThumbnail]:
    """An animated thumbnail (WebP, or GIF without WebP support), or None if the
    source is not animated or its frames together exceed ``max_pixels``.

    Raises:
        NotAnImageError, ImageTooLargeError.
    """
    from PIL import Image, ImageSequence

    with _open(source) as im:
        if not getattr(im, "is_animated", False):
            return None
        width, height = im.size
        _check_pixels(width, height, max_pixels)
        try:
            n_frames = int(getattr(im, "n_frames", 1))
            if width * height * n_frames > max_pixels:
                return None
            out_w, out_h = output_size(width, height, size)
            box = _region(width, height, size)
            frames: list[Image.Image] = []
            durations: list[int] = []
            for frame in ImageSequence.Iterator(im):
                rgba = frame.convert("RGBA")
                frames.append(rgba.resize((out_w, out_h), Image.Resampling.LANCZOS, box=box))
                durations.append(int(frame.info.get("duration", 100) or 100))
            loop = int(im.info.get("loop", 0) or 0)
        except (ThumbnailError, MemoryError):
            raise
        except Exception as e:
            raise NotAnImageError(f"{type(e).__name__}: {e}") from None
    buf = io.BytesIO()
    if _webp_available():
        frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], duration=durations,
                       loop=loop, quality=JPEG_QUALITY)
        media_type = "image/webp"
    else:
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=durations,
                       loop=loop, disposal=2)
        media_type = "image/gif"
    return RenderedThumbnail(buf.getvalue(), media_type, out_w, out_h, True)
