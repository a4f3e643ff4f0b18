"""Content-Type checks and the RFC 6266 Content-Disposition encoding."""

from __future__ import annotations

from twisted.trial import unittest

from matrixd.media.headers import content_disposition, is_inline_safe, is_valid_media_type, media_headers


class HeadersTestCase(unittest.TestCase):
    def test_media_type_syntax(self) -> None:
        """Only type/subtype[;params] in printable ASCII is a valid Content-Type."""
        for good in ("image/png", "text/plain; charset=utf-8", "application/vnd.api+json", "Image/PNG"):
            self.assertTrue(is_valid_media_type(good), good)
        for bad in ("", "png", "image/", "/png", "image/png\r\nX-Evil: 1", "imäge/png", "a b/c", "x/" + "y" * 300):
            self.assertFalse(is_valid_media_type(bad), bad)

    def test_inline_list(self) -> None:
        """The spec's inline-safe list, compared case-insensitively without parameters."""
        self.assertTrue(is_inline_safe("IMAGE/PNG"))
        self.assertTrue(is_inline_safe("text/plain; charset=utf-8"))
        for unsafe in ("text/html", "image/svg+xml", "application/javascript", "application/xhtml+xml",
                       "application/octet-stream"):
            self.assertFalse(is_inline_safe(unsafe), unsafe)

    def test_disposition_encoding(self) -> None:
        """Plain ASCII names are quoted; anything else goes in filename*= percent-encoded UTF-8."""
        self.assertEqual(content_disposition("inline", None), "inline")
        self.assertEqual(content_disposition("attachment", "a b.pdf"), 'attachment; filename="a b.pdf"')
        self.assertEqual(content_disposition("inline", "日本.png"), "inline; filename*=utf-8''%E6%97%A5%E6%9C%AC.png")
        self.assertEqual(content_disposition("inline", 'a"b'), "inline; filename*=utf-8''a%22b")
        self.assertEqual(content_disposition("inline", "a\r\nb"), "inline; filename*=utf-8''a%0D%0Ab")
        self.assertEqual(content_disposition("inline", "100%.txt"), "inline; filename*=utf-8''100%25.txt")

    def test_svg_is_attachment(self) -> None:
        """SVG (scriptable) is an attachment even though it is an image type."""
        headers = media_headers("image/svg+xml", "x.svg", cache_control="private")
        self.assertEqual(headers["Content-Disposition"], 'attachment; filename="x.svg"')
        self.assertIn("sandbox", headers["Content-Security-Policy"])
