"""Thumbnails through the real servlets, from PNG/JPEG/GIF images made by Pillow in the test."""

from __future__ import annotations

import warnings

from twisted.trial import unittest

from matrixd.testing.http import FakeChannel
from tests.media.util import (
    animated_gif_bytes,
    image_bytes,
    make_media_homeserver,
    open_image,
    png_header_only,
    upload,
)

THUMB = "/_matrix/client/v1/media/thumbnail/test"


class ThumbnailTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs = make_media_homeserver(self)
        _, self.token = self.hs.create_user("alice")

    def thumb(self, media_id: str, query: str) -> FakeChannel:
        return self.hs.request("GET", f"{THUMB}/{media_id}?{query}", access_token=self.token)

    def assert_image(self, channel: FakeChannel, size: tuple[int, int], media_type: str) -> None:
        self.assertEqual(channel.code, 200, channel.result_body[:300])
        self.assertEqual(channel.headers.getRawHeaders(b"Content-Type"), [media_type.encode()])
        self.assertEqual(open_image(channel.result_body).size, size)

    def test_pregenerated_on_upload(self) -> None:
        """Uploading an image stores the configured sizes that are smaller than it."""
        media_id = upload(self.hs, self.token, image_bytes(1000, 750))
        rows = self.hs.run(self.hs.components.media.store.get_thumbnails("test", media_id))
        got = {(r.box_width, r.box_height, r.method): (r.width, r.height, r.media_type) for r in rows}
        self.assertEqual(got, {
            (32, 32, "crop"): (32, 32, "image/png"),
            (96, 96, "crop"): (96, 96, "image/png"),
            (320, 240, "scale"): (320, 240, "image/png"),
            (640, 480, "scale"): (640, 480, "image/png"),
            (800, 600, "scale"): (800, 600, "image/png"),
        })

    def test_scale_and_crop_sizes(self) -> None:
        """scale keeps the aspect ratio, crop gives the requested one; neither is smaller than asked."""
        media_id = upload(self.hs, self.token, image_bytes(1000, 500))
        self.assert_image(self.thumb(media_id, "width=320&height=240&method=scale"), (320, 160), "image/png")
        self.assert_image(self.thumb(media_id, "width=96&height=96&method=crop"), (96, 96), "image/png")
        self.assert_image(self.thumb(media_id, "width=30&height=30&method=crop"), (32, 32), "image/png")
        # Between the configured sizes: the next larger one that covers the request.
        self.assert_image(self.thumb(media_id, "width=500&height=200&method=scale"), (640, 320), "image/png")
        # A crop too large for the crop sizes falls back to a scale size big enough to crop from.
        self.assert_image(self.thumb(media_id, "width=100&height=100&method=crop"), (320, 160), "image/png")

    def test_thumbnail_headers(self) -> None:
        """Thumbnails are inline with a thumbnail filename and the media safety headers."""
        media_id = upload(self.hs, self.token, image_bytes(400, 400))
        channel = self.thumb(media_id, "width=96&height=96&method=crop")
        self.assertEqual(channel.headers.getRawHeaders(b"Content-Disposition"), [b'inline; filename="thumbnail.png"'])
        self.assertEqual(channel.headers.getRawHeaders(b"X-Content-Type-Options"), [b"nosniff"])
        self.assertEqual(channel.headers.getRawHeaders(b"Cross-Origin-Resource-Policy"), [b"cross-origin"])
        self.assertTrue(channel.headers.getRawHeaders(b"Content-Security-Policy"))

    def test_jpeg_gives_jpeg(self) -> None:
        """JPEG sources give JPEG thumbnails."""
        media_id = upload(self.hs, self.token, image_bytes(800, 600, "JPEG"), "image/jpeg")
        channel = self.thumb(media_id, "width=320&height=240")
        self.assert_image(channel, (320, 240), "image/jpeg")
        self.assertEqual(channel.headers.getRawHeaders(b"Content-Disposition"), [b'inline; filename="thumbnail.jpg"'])

    def test_exif_rotation_applied(self) -> None:
        """A JPEG whose EXIF says "rotate 90" is thumbnailed upright (width and height swapped)."""
        media_id = upload(self.hs, self.token, image_bytes(800, 400, "JPEG", exif_orientation=6), "image/jpeg")
        self.assert_image(self.thumb(media_id, "width=320&height=240&method=scale"), (120, 240), "image/jpeg")

    def test_smaller_than_request_returns_original(self) -> None:
        """An image smaller than the request in both dimensions comes back as the original bytes."""
        data = image_bytes(50, 40)
        media_id = upload(self.hs, self.token, data)
        channel = self.thumb(media_id, "width=96&height=96&method=crop")
        self.assertEqual(channel.code, 200)
        self.assertEqual(channel.result_body, data)

    def test_never_upscaled(self) -> None:
        """A request larger than every stored size gets the full image, never a smaller one."""
        data = image_bytes(1200, 900)
        media_id = upload(self.hs, self.token, data)
        channel = self.thumb(media_id, "width=1000&height=1000&method=scale")
        self.assertEqual(channel.code, 200)
        self.assertEqual(channel.result_body, data)

    def test_full_size_reencode_for_unsafe_original(self) -> None:
        """A BMP original is not served as a thumbnail; a full-size PNG rendering is."""
        media_id = upload(self.hs, self.token, image_bytes(60, 30, "BMP"), "image/bmp")
        self.assert_image(self.thumb(media_id, "width=100&height=100"), (60, 30), "image/png")

    def test_dynamic_thumbnails(self) -> None:
        """With dynamic_thumbnails the exact requested size is generated and cached."""
        hs = make_media_homeserver(self, {"dynamic_thumbnails": True})
        _, token = hs.create_user("bob")
        media_id = upload(hs, token, image_bytes(1000, 1000))
        channel = hs.request("GET", f"{THUMB}/{media_id}?width=150&height=100&method=crop", access_token=token)
        self.assert_image(channel, (150, 100), "image/png")
        rows = hs.run(hs.components.media.store.get_thumbnails("test", media_id))
        self.assertIn((150, 100, "crop"), {(r.box_width, r.box_height, r.method) for r in rows})
        again = hs.request("GET", f"{THUMB}/{media_id}?width=150&height=100&method=crop", access_token=token)
        self.assertEqual(again.result_body, channel.result_body)

    def test_animated(self) -> None:
        """animated=true gives an animated thumbnail of an animated GIF; otherwise it is static."""
        media_id = upload(self.hs, self.token, animated_gif_bytes(200, 200, frames=4), "image/gif")
        moving = self.thumb(media_id, "width=96&height=96&method=crop&animated=true")
        self.assertEqual(moving.code, 200)
        im = open_image(moving.result_body)
        self.assertEqual(im.size, (96, 96))
        self.assertEqual(getattr(im, "n_frames", 1), 4)
        self.assertIn(moving.headers.getRawHeaders(b"Content-Type"), ([b"image/webp"], [b"image/gif"]))
        still = self.thumb(media_id, "width=96&height=96&method=crop")
        self.assert_image(still, (96, 96), "image/png")
        self.assertFalse(getattr(open_image(still.result_body), "is_animated", False))
        # Smaller than the request: the original would be animated, so a static copy is served.
        small = self.thumb(media_id, "width=300&height=300&animated=false")
        self.assert_image(small, (200, 200), "image/png")
        self.assertFalse(getattr(open_image(small.result_body), "is_animated", False))

    def test_animated_true_on_static_image(self) -> None:
        """animated=true on a JPEG behaves like animated=false."""
        media_id = upload(self.hs, self.token, image_bytes(400, 300, "JPEG"), "image/jpeg")
        self.assert_image(self.thumb(media_id, "width=320&height=240&animated=true"), (320, 240), "image/jpeg")

    def test_non_image(self) -> None:
        """Thumbnails of non-images, and of corrupt images, are 400 M_UNKNOWN."""
        text_id = upload(self.hs, self.token, b"just text", "text/plain")
        channel = self.thumb(text_id, "width=32&height=32")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (400, "M_UNKNOWN"))
        corrupt_id = upload(self.hs, self.token, b"\x89PNG\r\n\x1a\nnot really", "image/png")
        channel = self.thumb(corrupt_id, "width=32&height=32")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (400, "M_UNKNOWN"))

    def test_too_many_pixels(self) -> None:
        """Images over max_image_pixels are stored but never decoded: 413 M_TOO_LARGE."""
        hs = make_media_homeserver(self, {"max_image_pixels": 10_000})
        _, token = hs.create_user("bob")
        media_id = upload(hs, token, image_bytes(200, 100))
        channel = hs.request("GET", f"{THUMB}/{media_id}?width=32&height=32", access_token=token)
        self.assertEqual((channel.code, channel.json_body["errcode"]), (413, "M_TOO_LARGE"))
        self.assertEqual(hs.run(hs.components.media.store.get_thumbnails("test", media_id)), [])

    def test_decompression_bomb(self) -> None:
        """Headers claiming huge sizes are refused from the header alone (413), never decoded."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about the 100M-pixel one; we refuse it ourselves
            for side in (100_000, 10_000):
                media_id = upload(self.hs, self.token, png_header_only(side, side))
                channel = self.thumb(media_id, "width=32&height=32")
                self.assertEqual((channel.code, channel.json_body["errcode"]), (413, "M_TOO_LARGE"), side)

    def test_bad_params(self) -> None:
        """Missing or malformed width/height/method/animated are 400 with the spec's errcodes."""
        media_id = upload(self.hs, self.token, image_bytes(100, 100))
        cases = {
            "height=32": "M_MISSING_PARAM",
            "width=32": "M_MISSING_PARAM",
            "width=0&height=32": "M_INVALID_PARAM",
            "width=-5&height=32": "M_INVALID_PARAM",
            "width=abc&height=32": "M_INVALID_PARAM",
            "width=32&height=32&method=stretch": "M_INVALID_PARAM",
            "width=32&height=32&animated=yes": "M_INVALID_PARAM",
        }
        for query, errcode in cases.items():
            channel = self.thumb(media_id, query)
            self.assertEqual((channel.code, channel.json_body["errcode"]), (400, errcode), query)

    def test_unknown_media(self) -> None:
        """A thumbnail of an unknown id is 404 M_NOT_FOUND."""
        channel = self.thumb("doesNotExist", "width=32&height=32")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"))

    def test_legacy_thumbnail_when_unfrozen(self) -> None:
        """The deprecated /_matrix/media/v3/thumbnail serves without a token when the freeze is off."""
        hs = make_media_homeserver(self, {"enable_authenticated_media": False})
        _, token = hs.create_user("bob")
        media_id = upload(hs, token, image_bytes(640, 480))
        channel = hs.request("GET", f"/_matrix/media/v3/thumbnail/test/{media_id}?width=32&height=32&method=crop")
        self.assert_image(channel, (32, 32), "image/png")
