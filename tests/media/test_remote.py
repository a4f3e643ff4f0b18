"""Remote media: fetched once through a RemoteMediaFetcher, cached, served like local media."""

from __future__ import annotations

from typing import Optional

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.api.errors import MatrixError, NotFoundError
from matrixd.http.server import JsonResource
from matrixd.media.area import MediaArea, build_media_area
from matrixd.media.remote import MediaSink, RemoteMediaMetadata
from matrixd.media.sizing import ThumbnailRequest
from matrixd.media.storage import FileLocation
from matrixd.rest.media import build_media_servlets
from matrixd.testing.http import FakeChannel, make_request, make_site
from tests.media.util import image_bytes, make_media_homeserver, open_image

DOWNLOAD = "/_matrix/client/v1/media/download/remote.example"
THUMB = "/_matrix/client/v1/media/thumbnail/remote.example"


class FakeRemoteFetcher:
    """A remote server with a fixed set of files; counts fetches."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str, Optional[str]]] = {}
        self.fetches: list[tuple[str, str, int]] = []

    async def fetch_media(self, server_name: str, media_id: str, sink: MediaSink, *, max_size: int,
                          timeout_ms: int) -> RemoteMediaMetadata:
        self.fetches.append((server_name, media_id, timeout_ms))
        if media_id not in self.files:
            raise NotFoundError("Not found on remote")
        data, media_type, name = self.files[media_id]
        for i in range(0, len(data), 1000):
            sink.write(data[i:i + 1000])
        return RemoteMediaMetadata(media_type, name)


class RemoteMediaTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs = make_media_homeserver(self, {"max_upload_size": 200_000})
        _, self.token = self.hs.create_user("alice")
        self.remote = FakeRemoteFetcher()
        c = self.hs.components
        self.area: MediaArea = build_media_area(
            config=self.hs.config.media, server_name="test", reactor=self.hs.reactor, clock=c.clock, db=c.db,
            rc_media_create=self.hs.config.ratelimiting.media_create, remote=self.remote,
        )
        servlets = build_media_servlets(c.auth, self.hs.config.media, self.area.repository, self.area.thumbnails)
        resource = JsonResource()
        for servlet in servlets.media + servlets.client:
            servlet.register(resource)
        self.site = make_site(self.hs.reactor, resource)

    def get(self, path: str, token: Optional[str] = "default") -> FakeChannel:
        return make_request(self.hs.reactor, self.site, "GET", path,
                            access_token=self.token if token == "default" else token)

    def test_fetched_once_then_cached(self) -> None:
        """The first download fetches and caches (file + row); later ones are served from the cache."""
        self.remote.files["remoteFile1"] = (b"remote bytes" * 500, "text/plain", "far away.txt")
        first = self.get(f"{DOWNLOAD}/remoteFile1?timeout_ms=5000")
        self.assertEqual(first.code, 200, first.result_body)
        self.assertEqual(first.result_body, b"remote bytes" * 500)
        self.assertEqual(first.headers.getRawHeaders(b"Content-Disposition"), [b'inline; filename="far away.txt"'])
        second = self.get(f"{DOWNLOAD}/remoteFile1/renamed.txt")
        self.assertEqual(second.result_body, b"remote bytes" * 500)
        self.assertEqual(second.headers.getRawHeaders(b"Content-Disposition"), [b'inline; filename="renamed.txt"'])
        self.assertEqual(self.remote.fetches, [("remote.example", "remoteFile1", 5000)])
        cached = self.hs.run(self.area.store.get_remote_media("remote.example", "remoteFile1"))
        assert cached is not None
        self.assertEqual((cached.media_length, cached.upload_name), (6000, "far away.txt"))
        path = self.area.storage.path_for(FileLocation("remoteFile1", origin="remote.example"))
        self.assertIn("/remote_content/remote.example/re/mo/teFile1", path)

    def test_remote_not_found(self) -> None:
        """A 404 from the origin is a 404 here, and nothing is cached."""
        channel = self.get(f"{DOWNLOAD}/missing1")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"))
        self.assertIsNone(self.hs.run(self.area.store.get_remote_media("remote.example", "missing1")))

    def test_remote_too_large(self) -> None:
        """Remote content over the size limit is 502 M_TOO_LARGE and not cached."""
        self.remote.files["bigFile"] = (b"x" * 200_001, "application/octet-stream", None)
        channel = self.get(f"{DOWNLOAD}/bigFile")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (502, "M_TOO_LARGE"))
        self.assertIsNone(self.hs.run(self.area.store.get_remote_media("remote.example", "bigFile")))
        self.assertEqual(self.area.storage.open(FileLocation("bigFile", origin="remote.example")), None)

    def test_remote_thumbnail(self) -> None:
        """Thumbnails of remote images are generated on demand from the cached copy."""
        self.remote.files["remoteImg"] = (image_bytes(640, 480, "JPEG"), "image/jpeg", None)
        channel = self.get(f"{THUMB}/remoteImg?width=96&height=96&method=crop")
        self.assertEqual(channel.code, 200, channel.result_body[:200])
        self.assertEqual(channel.headers.getRawHeaders(b"Content-Type"), [b"image/jpeg"])
        self.assertEqual(open_image(channel.result_body).size, (96, 96))
        rows = self.hs.run(self.area.store.get_thumbnails("remote.example", "remoteImg"))
        self.assertEqual([(r.box_width, r.box_height, r.method) for r in rows], [(96, 96, "crop")])

    def test_remote_too_many_pixels_is_502(self) -> None:
        """Remote images over max_image_pixels are 502 M_TOO_LARGE (413 is for local content)."""
        hs = make_media_homeserver(self, {"max_image_pixels": 1000})
        area = build_media_area(
            config=hs.config.media, server_name="test", reactor=hs.reactor, clock=hs.components.clock,
            db=hs.components.db, rc_media_create=hs.config.ratelimiting.media_create, remote=self.remote,
        )
        self.remote.files["bigImg"] = (image_bytes(100, 100), "image/png", None)
        fetched = defer.ensureDeferred(area.repository.get_media(
            "remote.example", "bigImg", timeout_ms=1000, allow_remote=True, authenticated=True))
        hs.advance(0)  # thread-pool results arrive through callFromThread
        media = self.successResultOf(fetched)
        d = defer.ensureDeferred(area.thumbnails.get_thumbnail(media, ThumbnailRequest(32, 32, "scale")))
        hs.advance(0)
        error = self.failureResultOf(d, MatrixError).value
        assert isinstance(error, MatrixError)
        self.assertEqual((error.code, error.errcode), (502, "M_TOO_LARGE"))

    def test_legacy_endpoint_does_not_fetch_during_freeze(self) -> None:
        """Unauthenticated downloads of uncached remote media are 404 during the freeze, without fetching."""
        self.remote.files["remoteFile2"] = (b"data", "text/plain", None)
        channel = self.get("/_matrix/media/v3/download/remote.example/remoteFile2", token=None)
        self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"))
        self.assertEqual(self.remote.fetches, [])
