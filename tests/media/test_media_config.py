"""The media config keys this area added: pending-upload limits."""

from __future__ import annotations

from twisted.trial import unittest

from matrixd.api.errors import ConfigError
from matrixd.config import parse_config_dict


class MediaConfigKeysTestCase(unittest.TestCase):
    def test_defaults(self) -> None:
        """Five pending uploads per user, unused ids lapse after 24h, the freeze is on."""
        media = parse_config_dict({"server_name": "test"}).media
        self.assertEqual(media.max_pending_media_uploads, 5)
        self.assertEqual(media.unused_expiration_time_ms, 24 * 3600 * 1000)
        self.assertTrue(media.enable_authenticated_media)

    def test_parsed(self) -> None:
        """Synapse's key names and duration syntax are accepted."""
        media = parse_config_dict(
            {"server_name": "test", "max_pending_media_uploads": 2, "unused_expiration_time": "30m"}
        ).media
        self.assertEqual((media.max_pending_media_uploads, media.unused_expiration_time_ms), (2, 30 * 60 * 1000))

    def test_invalid(self) -> None:
        """Zero pending uploads or a zero expiry are configuration errors naming the key."""
        for key, value in (("max_pending_media_uploads", 0), ("unused_expiration_time", 0)):
            with self.assertRaises(ConfigError) as cm:
                parse_config_dict({"server_name": "test", key: value})
            self.assertEqual(cm.exception.key, key)
