"""Thumbnail geometry and the choice of a thumbnail for a request: pure functions.

The spec's rules (content repository, "Thumbnails"):

* ``scale`` keeps the aspect ratio and fits the image inside the box;
  ``crop`` gives the box's aspect ratio, cutting from the centre.
* Never upscale.
* Never return a thumbnail smaller than asked for, unless the original makes
  that impossible; when the original is smaller than the request in both
  dimensions, return the original.

A thumbnail "size" is a box plus a method (a configured ``ThumbnailSize``, or
the request itself with ``dynamic_thumbnails``); what it produces from a given
image is ``output_size``. ``choose_thumbnail`` picks the smallest size whose
output is at least what the request would ideally get; ``None`` means the full
image is the only answer.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

import attrs

from matrixd.config.media import ThumbnailSize

Box = tuple[int, int, int, int]


@attrs.frozen(slots=True)
class ThumbnailRequest:
    width: int
    height: int
    method: str  # "crop" or "scale"
    # None: not given (behave as False, per the spec).
    animated: Optional[bool] = None


def scaled_size(image_w: int, image_h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """The size of the image fitted inside the box, aspect kept, never enlarged."""
    factor = min(box_w / image_w, box_h / image_h, 1.0)
    return max(1, round(image_w * factor)), max(1, round(image_h * factor))


def crop_region(image_w: int, image_h: int, box_w: int, box_h: int) -> Box:
    """The centred region of the image with the box's aspect ratio, as (left, top, right, bottom)."""
    target = box_w / box_h
    if image_w / image_h > target:
        crop_w, crop_h = max(1, min(image_w, round(image_h * target))), image_h
    else:
        crop_w, crop_h = image_w, max(1, min(image_h, round(image_w / target)))
    left = (image_w - crop_w) // 2
    top = (image_h - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


def cropped_size(image_w: int, image_h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """The output of ``crop``: the box, or the crop region itself if that is smaller."""
    left, top, right, bottom = crop_region(image_w, image_h, box_w, box_h)
    crop_w, crop_h = right - left, bottom - top
    if crop_w > box_w or crop_h > box_h:
        return box_w, box_h
    return crop_w, crop_h


def output_size(image_w: int, image_h: int, size: ThumbnailSize) -> tuple[int, int]:
    if size.method == "crop":
        return cropped_size(image_w, image_h, size.width, size.height)
    return scaled_size(image_w, image_h, size.width, size.height)


def is_full_size(image_w: int, image_h: int, size: ThumbnailSize) -> bool:
    """Whether ``size`` reproduces the whole image unchanged (no point generating it)."""
    return output_size(image_w, image_h, size) == (image_w, image_h)


def choose_thumbnail(
    image_w: int,
    image_h: int,
    request: ThumbnailRequest,
    sizes: Iterable[ThumbnailSize],
    dynamic: bool,
) -> Optional[ThumbnailSize]:
    """The size to serve for ``request``, or None to serve the full image.

    Candidates are ``sizes`` plus, when ``dynamic``, the request itself. A
    candidate qualifies if its output is no smaller than the request's ideal
    output (the request applied to this image without upscaling):

    * ``scale`` requests take only ``scale`` candidates (a crop loses content);
    * ``crop`` requests prefer ``crop`` candidates with the closest aspect
      ratio, and fall back to ``scale`` candidates large enough for the client
      to crop itself.

    Among qualifying candidates the smallest output wins.
    """
    if image_w <= request.width and image_h <= request.height:
        return None
    wanted = ThumbnailSize(request.width, request.height, request.method)
    candidates = list(sizes)
    if dynamic and wanted not in candidates:
        candidates.append(wanted)
    ideal_w, ideal_h = output_size(image_w, image_h, wanted)
    want_aspect = request.width / request.height

    best: Optional[tuple[tuple[int, float, int], ThumbnailSize]] = None
    for candidate in candidates:
        if request.method == "scale" and candidate.method != "scale":
            continue
        out_w, out_h = output_size(image_w, image_h, candidate)
        if out_w < ideal_w or out_h < ideal_h:
            continue
        if (out_w, out_h) == (image_w, image_h):
            # Reproduces the whole image: that is the full-size answer, not a thumbnail.
            continue
        if request.method == "crop":
            aspect_miss = round(abs(math.log((out_w / out_h) / want_aspect)), 2)
            key = (0 if candidate.method == "crop" else 1, aspect_miss, out_w * out_h)
        else:
            key = (0, 0.0, out_w * out_h)
        if best is None or key < best[0]:
            best = (key, candidate)
    return best[1] if best is not None else None


def thumbnail_file_name(size: ThumbnailSize, animated: bool) -> str:
    """The storage name of a thumbnail (media-id characters only)."""
    return f"{size.width}-{size.height}-{size.method}" + ("-animated" if animated else "")
