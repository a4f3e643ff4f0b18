"""Uploading and downloading media through the real servlets."""

from __future__ import annotations

import hashlib
import os
import urllib.parse

from twisted.trial import unittest

from matrixd.media.headers import CONTENT_SECURITY_POLICY
from matrixd.media.storage import FileLocation
from matrixd.testing.http import FakeChannel
from tests.media.util import image_bytes, make_media_homeserver, upload

AUTHED = "/_matrix/client/v1/media"
LEGACY = "/_matrix/media/v3"


def header(channel: FakeChannel, name: str) -> str:
    values = channel.headers.getRawHeaders(name.encode("ascii"))
    assert values, f"no {name} header"
    return values[0].decode("latin-1")


class UploadDownloadTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs = make_media_homeserver(self)
        self.user_id, self.token = self.hs.create_user("alice")

    def download(self, media_id: str, suffix: str = "", token: str | None = "default",
                 server: str = "test") -> FakeChannel:
        return self.hs.request("GET", f"{AUTHED}/download/{server}/{media_id}{suffix}",
                               access_token=self.token if token == "default" else token)

    def test_round_trip_with_safe_headers(self) -> None:
        """An upload downloads byte for byte with type, inline disposition, CSP, nosniff, CORP and caching."""
        data = image_bytes(64, 48)
        media_id = upload(self.hs, self.token, data, "image/png", filename="cat.png")
        channel = self.download(media_id)
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(channel.result_body, data)
        self.assertEqual(header(channel, "Content-Type"), "image/png")
        self.assertEqual(header(channel, "Content-Length"), str(len(data)))
        self.assertEqual(header(channel, "Content-Disposition"), 'inline; filename="cat.png"')
        self.assertEqual(header(channel, "Content-Security-Policy"), CONTENT_SECURITY_POLICY)
        self.assertEqual(header(channel, "X-Content-Type-Options"), "nosniff")
        self.assertEqual(header(channel, "Cross-Origin-Resource-Policy"), "cross-origin")
        self.assertEqual(header(channel, "Cache-Control"), "private, max-age=86400")

    def test_file_and_metadata_are_stored(self) -> None:
        """The file lands in the sharded layout and the DB row has type, length, name, uploader, sha256."""
        data = b"hello world" * 100
        media_id = upload(self.hs, self.token, data, "text/plain", filename="notes.txt")
        storage = self.hs.components.media.storage
        path = storage.path_for(FileLocation(media_id))
        self.assertEqual(
            path,
            os.path.join(storage.base_path, "local_content", media_id[0:2], media_id[2:4], media_id[4:]),
        )
        with open(path, "rb") as f:
            self.assertEqual(f.read(), data)
        media = self.hs.run(self.hs.components.media.store.get_local_media(media_id))
        assert media is not None
        self.assertEqual(
            (media.media_type, media.media_length, media.upload_name, media.user_id, media.sha256),
            ("text/plain", len(data), "notes.txt", self.user_id, hashlib.sha256(data).hexdigest()),
        )
        self.assertEqual(media.created_ts, 1_700_000_000_000)

    def test_no_filename_no_content_type(self) -> None:
        """Without ?filename the disposition has no filename; without Content-Type it is octet-stream (attachment)."""
        media_id = upload(self.hs, self.token, b"\x00\x01binary", content_type=None)
        channel = self.download(media_id)
        self.assertEqual(channel.code, 200)
        self.assertEqual(header(channel, "Content-Type"), "application/octet-stream")
        self.assertEqual(header(channel, "Content-Disposition"), "attachment")

    def test_unsafe_type_is_attachment_with_its_type(self) -> None:
        """HTML keeps its Content-Type but is served as an attachment under the sandbox CSP."""
        media_id = upload(self.hs, self.token, b"<script>alert(1)</script>", "text/html", filename="x.html")
        channel = self.download(media_id)
        self.assertEqual(header(channel, "Content-Type"), "text/html")
        self.assertEqual(header(channel, "Content-Disposition"), 'attachment; filename="x.html"')
        self.assertEqual(header(channel, "Content-Security-Policy"), CONTENT_SECURITY_POLICY)

    def test_unicode_filename_uses_rfc5987(self) -> None:
        """A non-ASCII upload name comes back percent-encoded in filename*=utf-8''."""
        name = "Ünïcødé 文件.txt"
        media_id = upload(self.hs, self.token, b"x", "text/plain", filename=name)
        channel = self.download(media_id)
        value = header(channel, "Content-Disposition")
        self.assertEqual(value, "inline; filename*=utf-8''" + urllib.parse.quote(name, safe=""))
        self.assertEqual(urllib.parse.unquote(value.split("''", 1)[1]), name)

    def test_quotes_in_filename_are_encoded(self) -> None:
        """Quotes, backslashes and semicolons never appear raw inside the header."""
        name = 'say "hi"\\; now.txt'
        media_id = upload(self.hs, self.token, b"x", "text/plain", filename=name)
        value = header(self.download(media_id), "Content-Disposition")
        self.assertTrue(value.startswith("inline; filename*=utf-8''"), value)
        encoded = value.split("''", 1)[1]
        self.assertNotIn('"', encoded)
        self.assertNotIn("\\", encoded)
        self.assertNotIn(";", encoded)
        self.assertEqual(urllib.parse.unquote(encoded), name)

    def test_filename_override_in_path(self) -> None:
        """The /{fileName} path segment replaces the upload name in Content-Disposition."""
        media_id = upload(self.hs, self.token, b"x", "text/plain", filename="orig.txt")
        channel = self.download(media_id, "/" + urllib.parse.quote("other name.txt"))
        self.assertEqual(channel.code, 200)
        self.assertEqual(header(channel, "Content-Disposition"), 'inline; filename="other name.txt"')

    def test_head_sends_headers_only(self) -> None:
        """HEAD answers the download's headers with no body."""
        media_id = upload(self.hs, self.token, b"abc", "text/plain")
        channel = self.hs.request("HEAD", f"{AUTHED}/download/test/{media_id}", access_token=self.token)
        self.assertEqual(channel.code, 200)
        self.assertEqual(header(channel, "Content-Length"), "3")
        self.assertEqual(channel.result_body, b"")

    def test_too_large_upload(self) -> None:
        """A body over max_upload_size is 413 M_TOO_LARGE and stores nothing."""
        hs = make_media_homeserver(self, {"max_upload_size": 1000})
        _, token = hs.create_user("bob")
        channel = hs.request("POST", f"{LEGACY}/upload", b"x" * 1001, access_token=token,
                             headers={"Content-Type": "text/plain"})
        self.assertEqual(channel.code, 413, channel.result_body)
        self.assertEqual(channel.json_body["errcode"], "M_TOO_LARGE")
        self.assertFalse(os.path.exists(os.path.join(hs.config.media.media_store_path, "local_content")))
        ok = hs.request("POST", f"{LEGACY}/upload", b"x" * 1000, access_token=token)
        self.assertEqual(ok.code, 200, ok.result_body)

    def test_bad_content_type_refused(self) -> None:
        """A Content-Type that is not a media type is 400 M_INVALID_PARAM."""
        channel = self.hs.request("POST", f"{LEGACY}/upload", b"x", access_token=self.token,
                                  headers={"Content-Type": "not a type"})
        self.assertEqual(channel.code, 400)
        self.assertEqual(channel.json_body["errcode"], "M_INVALID_PARAM")

    def test_bad_filename_refused(self) -> None:
        """A filename with a NUL character or over 1024 characters is 400 M_INVALID_PARAM."""
        for query in ("filename=a%00b", "filename=" + "x" * 1025):
            channel = self.hs.request("POST", f"{LEGACY}/upload?{query}", b"x", access_token=self.token)
            self.assertEqual((channel.code, channel.json_body["errcode"]), (400, "M_INVALID_PARAM"), query[:20])

    def test_upload_needs_auth(self) -> None:
        """Uploading without an access token is 401 M_MISSING_TOKEN."""
        channel = self.hs.request("POST", f"{LEGACY}/upload", b"x")
        self.assertEqual(channel.code, 401)
        self.assertEqual(channel.json_body["errcode"], "M_MISSING_TOKEN")

    def test_authenticated_endpoints_refuse_anonymous(self) -> None:
        """/_matrix/client/v1/media download, thumbnail and config are 401 without a token."""
        media_id = upload(self.hs, self.token, image_bytes(10, 10))
        for path in (f"{AUTHED}/download/test/{media_id}", f"{AUTHED}/download/test/{media_id}/a.png",
                     f"{AUTHED}/thumbnail/test/{media_id}?width=5&height=5", f"{AUTHED}/config"):
            channel = self.hs.request("GET", path)
            self.assertEqual(channel.code, 401, path)
            self.assertEqual(channel.json_body["errcode"], "M_MISSING_TOKEN", path)
            bad = self.hs.request("GET", path, access_token="nope")
            self.assertEqual(bad.json_body["errcode"], "M_UNKNOWN_TOKEN", path)

    def test_unknown_and_malformed_media(self) -> None:
        """Unknown ids are 404 M_NOT_FOUND; ids or server names outside the allowed characters are 400."""
        channel = self.download("abcdefghijklmnop")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"))
        channel = self.download("bad.id")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (400, "M_INVALID_PARAM"))
        channel = self.download("%2E%2E%2F%2E%2E%2Fetc")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (400, "M_INVALID_PARAM"))
        channel = self.download("abcdef", server="..")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (400, "M_INVALID_PARAM"))

    def test_remote_media_without_federation_is_502(self) -> None:
        """With no federation client, remote media is an honest 502, not a fake 404."""
        channel = self.download("abcdef", server="remote.example")
        self.assertEqual(channel.code, 502, channel.result_body)

    def test_config_endpoints(self) -> None:
        """Both config endpoints give m.upload.size from max_upload_size."""
        for path in (f"{AUTHED}/config", f"{LEGACY}/config"):
            channel = self.hs.request("GET", path, access_token=self.token)
            self.assertEqual(channel.code, 200, path)
            self.assertEqual(channel.json_body, {"m.upload.size": 50 * 1024 * 1024})

    def test_preview_url_not_served(self) -> None:
        """URL previews are not implemented: both paths are 404 M_UNRECOGNIZED."""
        for path in (f"{AUTHED}/preview_url?url=https://example.com", f"{LEGACY}/preview_url?url=x"):
            channel = self.hs.request("GET", path, access_token=self.token)
            self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_UNRECOGNIZED"), path)

    def test_upload_rate_limited(self) -> None:
        """rc_media_create limits how fast one user creates media ids (429 M_LIMIT_EXCEEDED)."""
        hs = make_media_homeserver(self, {"rc_media_create": {"per_second": 0.1, "burst_count": 2}})
        _, token = hs.create_user("bob")
        codes = [hs.request("POST", f"{LEGACY}/upload", b"x", access_token=token).code for _ in range(3)]
        self.assertEqual(codes, [200, 200, 429])
        channel = hs.request("POST", "/_matrix/media/v1/create", access_token=token)
        self.assertEqual(channel.json_body["errcode"], "M_LIMIT_EXCEEDED")
        hs.advance(10)
        self.assertEqual(hs.request("POST", f"{LEGACY}/upload", b"x", access_token=token).code, 200)


class LegacyEndpointsTestCase(unittest.TestCase):
    def test_freeze_hides_new_media_from_unauthenticated_endpoints(self) -> None:
        """With enable_authenticated_media (the default) new media is 404 on the deprecated endpoints."""
        hs = make_media_homeserver(self)
        _, token = hs.create_user("alice")
        media_id = upload(hs, token, image_bytes(40, 40))
        for path in (f"{LEGACY}/download/test/{media_id}", f"/_matrix/media/r0/download/test/{media_id}/a.png",
                     f"{LEGACY}/thumbnail/test/{media_id}?width=10&height=10"):
            channel = hs.request("GET", path)
            self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"), path)
        self.assertEqual(hs.request("GET", f"{AUTHED}/download/test/{media_id}", access_token=token).code, 200)

    def test_unfrozen_media_on_legacy_endpoints(self) -> None:
        """With the freeze off, the deprecated endpoints serve without a token, publicly cacheable."""
        hs = make_media_homeserver(self, {"enable_authenticated_media": False})
        _, token = hs.create_user("alice")
        media_id = upload(hs, token, b"legacy", "text/plain", filename="l.txt")
        channel = hs.request("GET", f"{LEGACY}/download/test/{media_id}/renamed.txt?allow_redirect=true")
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(channel.result_body, b"legacy")
        self.assertEqual(header(channel, "Content-Disposition"), 'inline; filename="renamed.txt"')
        self.assertEqual(header(channel, "Cache-Control"), "public, max-age=86400, s-maxage=86400")
        self.assertEqual(header(channel, "X-Content-Type-Options"), "nosniff")

    def test_legacy_allow_remote_false(self) -> None:
        """allow_remote=false on uncached remote media is 404 (no fetch attempted); bad booleans are 400."""
        hs = make_media_homeserver(self, {"enable_authenticated_media": False})
        channel = hs.request("GET", f"{LEGACY}/download/remote.example/abcdef?allow_remote=false")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"))
        channel = hs.request("GET", f"{LEGACY}/download/remote.example/abcdef?allow_remote=maybe")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (400, "M_INVALID_PARAM"))

    def test_media_repo_disabled(self) -> None:
        """enable_media_repo: false serves no media endpoints on this process."""
        hs = make_media_homeserver(self, {"enable_media_repo": False})
        _, token = hs.create_user("alice")
        channel = hs.request("POST", f"{LEGACY}/upload", b"x", access_token=token)
        self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_UNRECOGNIZED"))
