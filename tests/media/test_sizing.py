"""The pure thumbnail geometry and selection rules (spec: content repository, Thumbnails)."""

from __future__ import annotations

from twisted.trial import unittest

from matrixd.config.media import DEFAULT_THUMBNAIL_SIZES, ThumbnailSize
from matrixd.media.sizing import (
    ThumbnailRequest,
    choose_thumbnail,
    crop_region,
    cropped_size,
    output_size,
    scaled_size,
    thumbnail_file_name,
)


def choose(w: int, h: int, rw: int, rh: int, method: str, dynamic: bool = False) -> ThumbnailSize | None:
    return choose_thumbnail(w, h, ThumbnailRequest(rw, rh, method), DEFAULT_THUMBNAIL_SIZES, dynamic)


class GeometryTestCase(unittest.TestCase):
    def test_scale_fits_inside_keeping_aspect(self) -> None:
        """scale fits the box with the image's aspect ratio and never enlarges."""
        self.assertEqual(scaled_size(1000, 500, 320, 240), (320, 160))
        self.assertEqual(scaled_size(500, 1000, 320, 240), (120, 240))
        self.assertEqual(scaled_size(100, 50, 320, 240), (100, 50))
        self.assertEqual(scaled_size(10000, 1, 32, 32), (32, 1))

    def test_crop_region_is_centred_with_box_aspect(self) -> None:
        """crop cuts the centred region with the box's aspect ratio."""
        self.assertEqual(crop_region(1000, 500, 96, 96), (250, 0, 750, 500))
        self.assertEqual(crop_region(500, 1000, 100, 50), (0, 375, 500, 625))

    def test_crop_never_enlarges(self) -> None:
        """A crop region smaller than the box is returned at its own size, aspect kept."""
        self.assertEqual(cropped_size(1000, 500, 96, 96), (96, 96))
        self.assertEqual(cropped_size(50, 200, 96, 96), (50, 50))
        self.assertEqual(output_size(50, 200, ThumbnailSize(96, 96, "crop")), (50, 50))

    def test_file_names_are_media_id_safe(self) -> None:
        """Thumbnail names use only media-id characters."""
        self.assertEqual(thumbnail_file_name(ThumbnailSize(32, 32, "crop"), False), "32-32-crop")
        self.assertEqual(thumbnail_file_name(ThumbnailSize(800, 600, "scale"), True), "800-600-scale-animated")


class ChooseTestCase(unittest.TestCase):
    def test_original_when_smaller_than_request(self) -> None:
        """Content smaller than the request in both dimensions: serve the original (None)."""
        self.assertIsNone(choose(50, 40, 96, 96, "crop"))
        self.assertIsNone(choose(320, 240, 320, 240, "scale"))

    def test_exact_configured_size(self) -> None:
        """A request matching a configured size gets that size."""
        self.assertEqual(choose(1000, 1000, 96, 96, "crop"), ThumbnailSize(96, 96, "crop"))
        self.assertEqual(choose(1000, 750, 640, 480, "scale"), ThumbnailSize(640, 480, "scale"))

    def test_never_smaller_than_requested(self) -> None:
        """The chosen size's output covers the request; the smallest such size wins."""
        for (w, h) in ((1000, 750), (4000, 3000), (3000, 1000), (1000, 3000)):
            for (rw, rh, method) in ((64, 64, "crop"), (100, 100, "scale"), (400, 300, "scale"), (33, 20, "crop"),
                                      (700, 100, "scale"), (200, 200, "crop")):
                size = choose(w, h, rw, rh, method)
                if size is None:
                    continue
                out_w, out_h = output_size(w, h, size)
                ideal = output_size(w, h, ThumbnailSize(rw, rh, method))
                self.assertGreaterEqual(out_w, ideal[0], (w, h, rw, rh, method, size))
                self.assertGreaterEqual(out_h, ideal[1], (w, h, rw, rh, method, size))
                if method == "scale":
                    self.assertEqual(size.method, "scale")

    def test_scale_never_uses_crop(self) -> None:
        """scale requests are never answered with a cropped thumbnail."""
        self.assertEqual(choose(1000, 1000, 30, 30, "scale"), ThumbnailSize(320, 240, "scale"))

    def test_crop_prefers_crop_then_scale(self) -> None:
        """crop requests take a crop size when one covers them, else a scale size to crop from."""
        self.assertEqual(choose(1000, 1000, 30, 30, "crop"), ThumbnailSize(32, 32, "crop"))
        self.assertEqual(choose(1000, 1000, 100, 100, "crop"), ThumbnailSize(320, 240, "scale"))

    def test_nothing_big_enough_means_full_size(self) -> None:
        """With no configured size large enough and no dynamic thumbnails, the full image is served."""
        self.assertIsNone(choose(2000, 2000, 1000, 1000, "scale"))

    def test_dynamic_gives_exact_request(self) -> None:
        """dynamic_thumbnails adds the request itself as a candidate."""
        self.assertEqual(choose(2000, 2000, 1000, 1000, "scale", dynamic=True), ThumbnailSize(1000, 1000, "scale"))
        self.assertEqual(choose(2000, 2000, 150, 100, "crop", dynamic=True), ThumbnailSize(150, 100, "crop"))
