"""Asynchronous uploads: POST /create reserves an mxc:// URI, PUT /upload fills it once."""

from __future__ import annotations

from twisted.trial import unittest

from matrixd.testing.http import FakeChannel
from tests.media.util import make_media_homeserver

CREATE = "/_matrix/media/v1/create"
UPLOAD = "/_matrix/media/v3/upload"
DOWNLOAD = "/_matrix/client/v1/media/download"


class AsyncUploadTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs = make_media_homeserver(self)
        self.user_id, self.token = self.hs.create_user("alice")

    def create(self, token: str | None = None) -> str:
        channel = self.hs.request("POST", CREATE, {}, access_token=token or self.token)
        self.assertEqual(channel.code, 200, channel.result_body)
        uri = channel.json_body["content_uri"]
        self.assertTrue(uri.startswith("mxc://test/"), uri)
        return str(uri[len("mxc://test/"):])

    def put(self, media_id: str, data: bytes, token: str | None = None, server: str = "test",
            content_type: str = "text/plain", filename: str | None = None) -> FakeChannel:
        path = f"{UPLOAD}/{server}/{media_id}" + (f"?filename={filename}" if filename else "")
        return self.hs.request("PUT", path, data, access_token=token or self.token,
                               headers={"Content-Type": content_type})

    def test_create_then_upload_then_download(self) -> None:
        """A reserved id expires 24h out by default, takes content once, and then downloads."""
        channel = self.hs.request("POST", CREATE, access_token=self.token)
        self.assertEqual(channel.code, 200)
        expires = channel.json_body["unused_expires_at"]
        self.assertEqual(expires, 1_700_000_000_000 + 24 * 3600 * 1000)
        media_id = channel.json_body["content_uri"].rsplit("/", 1)[1]
        put = self.put(media_id, b"later", filename="late.txt")
        self.assertEqual((put.code, put.json_body), (200, {}))
        got = self.hs.request("GET", f"{DOWNLOAD}/test/{media_id}", access_token=self.token)
        self.assertEqual(got.code, 200, got.result_body)
        self.assertEqual(got.result_body, b"later")
        self.assertEqual(got.headers.getRawHeaders(b"Content-Disposition"), [b'inline; filename="late.txt"'])

    def test_cannot_overwrite(self) -> None:
        """A second PUT to the same id is 409 M_CANNOT_OVERWRITE_MEDIA and the content stays."""
        media_id = self.create()
        self.assertEqual(self.put(media_id, b"first").code, 200)
        second = self.put(media_id, b"second")
        self.assertEqual((second.code, second.json_body["errcode"]), (409, "M_CANNOT_OVERWRITE_MEDIA"))
        got = self.hs.request("GET", f"{DOWNLOAD}/test/{media_id}", access_token=self.token)
        self.assertEqual(got.result_body, b"first")

    def test_direct_upload_cannot_be_overwritten(self) -> None:
        """PUT to an id made by POST /upload is refused with 409 too."""
        channel = self.hs.request("POST", UPLOAD, b"direct", access_token=self.token)
        media_id = channel.json_body["content_uri"].rsplit("/", 1)[1]
        put = self.put(media_id, b"again")
        self.assertEqual((put.code, put.json_body["errcode"]), (409, "M_CANNOT_OVERWRITE_MEDIA"))

    def test_other_user_forbidden(self) -> None:
        """Only the user who created the id may upload to it (403 M_FORBIDDEN)."""
        media_id = self.create()
        _, bob_token = self.hs.create_user("bob")
        put = self.put(media_id, b"mine now", token=bob_token)
        self.assertEqual((put.code, put.json_body["errcode"]), (403, "M_FORBIDDEN"))
        self.assertEqual(self.put(media_id, b"mine").code, 200)

    def test_unknown_or_foreign_id(self) -> None:
        """Uncreated ids, other servers' names and malformed ids are 404 M_NOT_FOUND."""
        for server, media_id in (("test", "neverCreated"), ("other.example", "abcdefgh"), ("test", "bad.id")):
            put = self.put(media_id, b"x", server=server)
            self.assertEqual((put.code, put.json_body["errcode"]), (404, "M_NOT_FOUND"), (server, media_id))

    def test_expired_id(self) -> None:
        """An id unused past unused_expires_at can no longer be uploaded to or downloaded."""
        hs = make_media_homeserver(self, {"unused_expiration_time": "1h"})
        _, token = hs.create_user("carol")
        channel = hs.request("POST", CREATE, access_token=token)
        media_id = channel.json_body["content_uri"].rsplit("/", 1)[1]
        hs.advance(3601)
        put = hs.request("PUT", f"{UPLOAD}/test/{media_id}", b"late", access_token=token)
        self.assertEqual((put.code, put.json_body["errcode"]), (404, "M_NOT_FOUND"))
        got = hs.request("GET", f"{DOWNLOAD}/test/{media_id}", access_token=token)
        self.assertEqual((got.code, got.json_body["errcode"]), (404, "M_NOT_FOUND"))

    def test_pending_limit(self) -> None:
        """More than max_pending_media_uploads unused ids is 429; uploading or expiry frees a slot."""
        hs = make_media_homeserver(self, {"max_pending_media_uploads": 2, "unused_expiration_time": "1h"})
        _, token = hs.create_user("dave")
        ids = []
        for _ in range(2):
            channel = hs.request("POST", CREATE, access_token=token)
            self.assertEqual(channel.code, 200)
            ids.append(channel.json_body["content_uri"].rsplit("/", 1)[1])
        refused = hs.request("POST", CREATE, access_token=token)
        self.assertEqual((refused.code, refused.json_body["errcode"]), (429, "M_LIMIT_EXCEEDED"))
        self.assertEqual(hs.request("PUT", f"{UPLOAD}/test/{ids[0]}", b"x", access_token=token).code, 200)
        self.assertEqual(hs.request("POST", CREATE, access_token=token).code, 200)
        self.assertEqual(hs.request("POST", CREATE, access_token=token).code, 429)
        hs.advance(3601)
        self.assertEqual(hs.request("POST", CREATE, access_token=token).code, 200)

    def test_download_waits_for_upload(self) -> None:
        """A download of a pending id waits, and is answered as soon as the content is uploaded."""
        media_id = self.create()
        waiting = self.hs.request("GET", f"{DOWNLOAD}/test/{media_id}?timeout_ms=10000",
                                  access_token=self.token, await_result=False)
        self.hs.advance(2)
        self.assertFalse(waiting.is_finished())
        self.assertEqual(self.put(media_id, b"arrived").code, 200)
        self.hs.advance(0)
        self.assertTrue(waiting.is_finished())
        self.assertEqual(waiting.code, 200)
        self.assertEqual(waiting.result_body, b"arrived")

    def test_not_yet_uploaded_times_out(self) -> None:
        """Waiting past timeout_ms gives 504 M_NOT_YET_UPLOADED (timeout_ms=0 answers at once)."""
        media_id = self.create()
        waiting = self.hs.request("GET", f"{DOWNLOAD}/test/{media_id}?timeout_ms=3000",
                                  access_token=self.token, await_result=False)
        self.hs.advance(2.9)
        self.assertFalse(waiting.is_finished())
        self.hs.advance(0.2)
        self.assertTrue(waiting.is_finished())
        self.assertEqual((waiting.code, waiting.json_body["errcode"]), (504, "M_NOT_YET_UPLOADED"))
        now = self.hs.request("GET", f"{DOWNLOAD}/test/{media_id}?timeout_ms=0", access_token=self.token)
        self.assertEqual((now.code, now.json_body["errcode"]), (504, "M_NOT_YET_UPLOADED"))
        bad = self.hs.request("GET", f"{DOWNLOAD}/test/{media_id}?timeout_ms=-1", access_token=self.token)
        self.assertEqual((bad.code, bad.json_body["errcode"]), (400, "M_INVALID_PARAM"))

    def test_create_and_put_need_auth(self) -> None:
        """POST /create and PUT /upload without a token are 401."""
        self.assertEqual(self.hs.request("POST", CREATE).code, 401)
        self.assertEqual(self.hs.request("PUT", f"{UPLOAD}/test/abcdefgh", b"x").code, 401)
