"""Federation media (Matrix 1.11): serving ``/_matrix/federation/v1/media/*`` and fetching remote media with it."""

from __future__ import annotations

import io
import os
from typing import Any, Optional

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from zope.interface import implementer

from matrixd.federation.media_client import FederationMediaFetcher

from matrixd.http.request import MatrixRequest
from matrixd.http.server import respond_with_bytes
from matrixd.media.multipart import MediaPart, MultipartError, MultipartStream, parse_media_multipart
from matrixd.testing.federation import FakeRemoteServer
from matrixd.testing.http import FakeChannel
from tests.federation.utils import REMOTE, make_federating_homeserver
from tests.media.util import animated_gif_bytes, image_bytes, open_image, upload

FED = "/_matrix/federation/v1/media"
CLIENT = "/_matrix/client/v1/media"


def multipart_of(channel: FakeChannel) -> tuple[dict[str, object], MediaPart]:
    content_type = (channel.headers.getRawHeaders(b"Content-Type") or [b""])[0].decode("ascii")
    return parse_media_multipart(content_type, channel.result_body)


def multipart_body(data: bytes, media_type: str, disposition: Optional[str] = None) -> tuple[bytes, str]:
    """What a remote server would send: (body, Content-Type)."""
    headers = {"Content-Type": media_type}
    if disposition is not None:
        headers["Content-Disposition"] = disposition
    stream = MultipartStream("b0und4ry", io.BytesIO(data), len(data), headers)
    return b"".join(iter(lambda: stream.read(7), b"")), "multipart/mixed; boundary=b0und4ry"


class ServeFederationMediaTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(
            self, {"media_store_path": os.path.abspath(self.mktemp())}
        )
        _, self.token = self.hs.create_user("alice")
        _, self.admin_token = self.hs.create_user("root", admin=True)

    def get(self, path: str) -> FakeChannel:
        return self.remote.request(self.hs, "GET", path)

    def test_download_is_multipart(self) -> None:
        """A signed download gets {} metadata and the bytes with their type and disposition."""
        data = b"some text content\r\n--not a boundary\r\n" * 50
        media_id = upload(self.hs, self.token, data, "text/plain", filename="notes.txt")
        channel = self.get(f"{FED}/download/{media_id}")
        self.assertEqual(channel.code, 200, channel.result_body[:300])
        self.assertEqual(channel.headers.getRawHeaders(b"Content-Length"), [str(len(channel.result_body)).encode()])
        metadata, part = multipart_of(channel)
        self.assertEqual(metadata, {})
        self.assertEqual(part.body, data)
        self.assertEqual(part.content_type, "text/plain")
        self.assertEqual(part.content_disposition, 'inline; filename="notes.txt"')
        self.assertIsNone(part.location)

    def test_download_unsafe_type_is_attachment(self) -> None:
        data = b"<html><script>alert(1)</script></html>"
        media_id = upload(self.hs, self.token, data, "text/html")
        _, part = multipart_of(self.get(f"{FED}/download/{media_id}"))
        self.assertEqual((part.body, part.content_type, part.content_disposition), (data, "text/html", "attachment"))

    def test_thumbnail_is_multipart(self) -> None:
        """Thumbnails take width/height/method like the client endpoint and come back as an image part."""
        media_id = upload(self.hs, self.token, image_bytes(640, 480, "JPEG"), "image/jpeg")
        channel = self.get(f"{FED}/thumbnail/{media_id}?width=96&height=96&method=crop")
        self.assertEqual(channel.code, 200, channel.result_body[:300])
        metadata, part = multipart_of(channel)
        self.assertEqual(metadata, {})
        self.assertEqual(part.content_type, "image/jpeg")
        self.assertEqual(part.content_disposition, 'inline; filename="thumbnail.jpg"')
        self.assertEqual(open_image(part.body).size, (96, 96))

    def test_animated_thumbnail(self) -> None:
        """animated=true gives an animated thumbnail of an animated GIF; without it, a static one."""
        media_id = upload(self.hs, self.token, animated_gif_bytes(200, 200), "image/gif")
        _, moving = multipart_of(self.get(f"{FED}/thumbnail/{media_id}?width=32&height=32&animated=true"))
        self.assertTrue(getattr(open_image(moving.body), "is_animated", False))
        _, still = multipart_of(self.get(f"{FED}/thumbnail/{media_id}?width=32&height=32"))
        self.assertFalse(getattr(open_image(still.body), "is_animated", False))

    def test_thumbnail_needs_size(self) -> None:
        media_id = upload(self.hs, self.token, image_bytes(64, 64), "image/png")
        channel = self.get(f"{FED}/thumbnail/{media_id}?width=32")
        self.assertEqual(channel.code, 400, channel.result_body)

    def test_unknown_media_is_404(self) -> None:
        for path in (f"{FED}/download/doesNotExist", f"{FED}/thumbnail/doesNotExist?width=32&height=32"):
            channel = self.get(path)
            self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"), path)

    def test_remote_media_is_not_served(self) -> None:
        """Cached media of another server is never served under our name."""
        self.hs.run(self.hs.components.media.store.store_remote_media(
            server_name="elsewhere.test", media_id="cachedRemote", media_type="text/plain", media_length=3,
            upload_name=None, sha256="0" * 64, authenticated=True, image=None,
        ))
        channel = self.get(f"{FED}/download/cachedRemote")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"))

    def test_quarantined_media_is_404(self) -> None:
        media_id = upload(self.hs, self.token, image_bytes(64, 64), "image/png")
        self.assertEqual(self.get(f"{FED}/download/{media_id}").code, 200)
        channel = self.hs.request("POST", f"/_synapse/admin/v1/media/quarantine/test/{media_id}", {},
                                  access_token=self.admin_token)
        self.assertEqual(channel.code, 200, channel.result_body)
        for path in (f"{FED}/download/{media_id}", f"{FED}/thumbnail/{media_id}?width=32&height=32"):
            channel = self.get(path)
            self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"), path)

    def test_unauthenticated_is_401(self) -> None:
        media_id = upload(self.hs, self.token, b"data", "text/plain")
        channel = self.hs.request("GET", f"{FED}/download/{media_id}")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (401, "M_UNAUTHORIZED"))
        channel = self.hs.request("GET", f"{FED}/thumbnail/{media_id}?width=1&height=1",
                                  access_token=self.token)
        self.assertEqual(channel.code, 401)

    def test_bad_signature_is_401(self) -> None:
        media_id = upload(self.hs, self.token, b"data", "text/plain")
        wrong = self.remote.authorization("GET", "test", f"{FED}/download/other")
        channel = self.remote.request(self.hs, "GET", f"{FED}/download/{media_id}", authorization=wrong)
        self.assertEqual((channel.code, channel.json_body["errcode"]), (401, "M_UNAUTHORIZED"))


class _RemoteMedia:
    """A test homeserver and a fake remote whose media endpoints the test sets up."""

    hs: Any
    remote: FakeRemoteServer
    token: str
    legacy_requests: list[str]

    def make(self, testcase: unittest.TestCase, **config: Any) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(
            testcase, {"media_store_path": os.path.abspath(testcase.mktemp()), **config}
        )
        _, self.token = self.hs.create_user("alice")
        self.legacy_requests = []

    def download(self, media_id: str) -> FakeChannel:
        return self.hs.request("GET", f"{CLIENT}/download/{REMOTE}/{media_id}", access_token=self.token)

    def serve_federation(self, files: dict[str, tuple[bytes, str, Optional[str]]]) -> None:
        async def handler(origin: str, content: Any, request: MatrixRequest, media_id: str) -> None:
            if media_id not in files:
                respond_with_bytes(request, 404, b'{"errcode":"M_NOT_FOUND","error":"no"}', b"application/json")
                return
            data, media_type, disposition = files[media_id]
            body, content_type = multipart_body(data, media_type, disposition)
            respond_with_bytes(request, 200, body, content_type.encode("ascii"))

        self.remote.handle("GET", f"{FED}/download/(?P<media_id>[^/]+)", handler)

    def serve_legacy(self, files: dict[str, tuple[bytes, str]]) -> None:
        async def handler(request: MatrixRequest, server_name: str, media_id: str) -> None:
            self.legacy_requests.append((request.uri or b"").decode())
            data, media_type = files[media_id]
            respond_with_bytes(request, 200, data, media_type.encode("ascii"),
                               {"Content-Disposition": 'attachment; filename="old.bin"'})

        self.remote.handle_raw("GET", "/_matrix/media/v3/download/(?P<server_name>[^/]+)/(?P<media_id>[^/]+)",
                               handler)


class FetchOverFederationTestCase(_RemoteMedia, unittest.TestCase):
    """A local client downloads media of a fake remote server; we fetch it over federation."""

    def setUp(self) -> None:
        self.make(self)

    def test_fetched_over_federation(self) -> None:
        """The signed federation request is made; bytes, type and file name are cached and served."""
        data = image_bytes(120, 80)
        self.serve_federation({"remotePic": (data, "image/png", "inline; filename*=utf-8''caf%C3%A9.png")})
        channel = self.download("remotePic")
        self.assertEqual(channel.code, 200, channel.result_body[:300])
        self.assertEqual(channel.result_body, data)
        self.assertEqual(channel.headers.getRawHeaders(b"Content-Type"), [b"image/png"])
        self.assertEqual([r.path for r in self.remote.received], [f"{FED}/download/remotePic"])
        self.assertEqual(self.remote.received[0].origin, "test")
        cached = self.hs.run(self.hs.components.media.store.get_remote_media(REMOTE, "remotePic"))
        assert cached is not None
        self.assertEqual((cached.media_length, cached.upload_name), (len(data), "café.png"))
        # A thumbnail of the cached copy needs no further request.
        thumb = self.hs.request("GET", f"{CLIENT}/thumbnail/{REMOTE}/remotePic?width=32&height=32",
                                access_token=self.token)
        self.assertEqual(thumb.code, 200, thumb.result_body[:200])
        self.assertEqual(len(self.remote.received), 1)
        self.assertEqual(self.legacy_requests, [])

    def test_remote_404_is_404_without_fallback(self) -> None:
        self.serve_federation({})
        self.serve_legacy({})
        channel = self.download("missing")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"))
        self.assertEqual(self.legacy_requests, [])

    def test_falls_back_to_legacy_on_unrecognized(self) -> None:
        """A remote without the endpoint (404 M_UNRECOGNIZED) is asked on the legacy one, allow_remote=false."""
        self.serve_legacy({"oldMedia": (b"legacy bytes", "application/octet-stream")})
        channel = self.download("oldMedia")
        self.assertEqual(channel.code, 200, channel.result_body[:300])
        self.assertEqual(channel.result_body, b"legacy bytes")
        self.assertEqual(len(self.legacy_requests), 1)
        self.assertIn(f"/_matrix/media/v3/download/{REMOTE}/oldMedia?", self.legacy_requests[0])
        self.assertIn("allow_remote=false", self.legacy_requests[0])
        cached = self.hs.run(self.hs.components.media.store.get_remote_media(REMOTE, "oldMedia"))
        assert cached is not None
        self.assertEqual(cached.upload_name, "old.bin")

    def test_falls_back_on_405(self) -> None:
        async def not_allowed(request: MatrixRequest, media_id: str) -> None:
            respond_with_bytes(request, 405, b"Method Not Allowed", b"text/plain")

        self.remote.handle_raw("GET", f"{FED}/download/(?P<media_id>[^/]+)", not_allowed)
        self.serve_legacy({"m405": (b"via legacy", "text/plain")})
        channel = self.download("m405")
        self.assertEqual((channel.code, channel.result_body), (200, b"via legacy"))

    def test_server_error_is_502_without_fallback(self) -> None:
        async def broken(request: MatrixRequest, media_id: str) -> None:
            respond_with_bytes(request, 500, b'{"errcode":"M_UNKNOWN","error":"boom"}', b"application/json")

        self.remote.handle_raw("GET", f"{FED}/download/(?P<media_id>[^/]+)", broken)
        self.serve_legacy({"m500": (b"no", "text/plain")})
        channel = self.download("m500")
        self.assertEqual(channel.code, 502, channel.result_body)
        self.assertEqual(self.legacy_requests, [])

    def test_invalid_multipart_is_502(self) -> None:
        async def handler(origin: str, content: Any, request: MatrixRequest, media_id: str) -> None:
            respond_with_bytes(request, 200, b"just bytes", b"image/png")

        self.remote.handle("GET", f"{FED}/download/(?P<media_id>[^/]+)", handler)
        self.serve_legacy({"x": (b"no", "text/plain")})
        channel = self.download("x")
        self.assertEqual(channel.code, 502, channel.result_body)
        self.assertEqual(self.legacy_requests, [])
        self.assertIsNone(self.hs.run(self.hs.components.media.store.get_remote_media(REMOTE, "x")))

    def test_too_large_is_502(self) -> None:
        limit = self.hs.config.media.max_upload_size
        self.serve_federation({"huge": (b"x" * (limit + 1), "application/octet-stream", None)})
        channel = self.download("huge")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (502, "M_TOO_LARGE"))

    def test_plain_http_location_is_502(self) -> None:
        """A Location part is only followed over HTTPS (through the federation connector): http is refused."""
        async def handler(origin: str, content: Any, request: MatrixRequest, media_id: str) -> None:
            body = (b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\n"
                    b"Location: http://127.0.0.1/internal\r\n\r\n\r\n--b--\r\n")
            respond_with_bytes(request, 200, body, b"multipart/mixed; boundary=b")

        self.remote.handle("GET", f"{FED}/download/(?P<media_id>[^/]+)", handler)
        channel = self.download("redirected")
        self.assertEqual(channel.code, 502, channel.result_body)


class FetchSizeLimitTestCase(_RemoteMedia, unittest.TestCase):
    """With a small max_upload_size, answers over it are refused while they are read (502 M_TOO_LARGE)."""

    def setUp(self) -> None:
        self.make(self, max_upload_size=1000)

    def test_multipart_body_over_limit(self) -> None:
        self.serve_federation({"big": (b"y" * 70_000, "application/octet-stream", None)})
        channel = self.download("big")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (502, "M_TOO_LARGE"))
        self.assertIsNone(self.hs.run(self.hs.components.media.store.get_remote_media(REMOTE, "big")))

    def test_legacy_body_over_limit(self) -> None:
        self.serve_legacy({"bigOld": (b"z" * 1001, "application/octet-stream")})
        channel = self.download("bigOld")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (502, "M_TOO_LARGE"))
        self.assertEqual(len(self.legacy_requests), 1)


@implementer(IResponse)
class _CannedResponse:
    def __init__(self, code: int, body: bytes, headers: dict[bytes, list[bytes]]) -> None:
        self.code = code
        self.phrase = b"OK"
        self.version = (b"HTTP", 1, 1)
        self.headers = Headers(headers)
        self.length = len(body)
        self.request = None
        self.previousResponse = None
        self._body = body

    def deliverBody(self, protocol: Protocol) -> None:
        protocol.dataReceived(self._body)
        protocol.connectionLost(Failure(ResponseDone()))

    def setPreviousResponse(self, response: Any) -> None:
        pass


class _CannedAgent:
    """An HTTPS "CDN": answers every URL from ``files``, recording what was asked."""

    def __init__(self, files: dict[bytes, tuple[bytes, bytes]]) -> None:
        self.files = files
        self.requested: list[bytes] = []

    def request(self, method: bytes, uri: bytes, headers: Any = None, bodyProducer: Any = None) -> Any:
        self.requested.append(uri)
        if uri not in self.files:
            return defer.succeed(_CannedResponse(404, b"", {}))
        data, media_type = self.files[uri]
        return defer.succeed(_CannedResponse(200, data, {
            b"Content-Type": [media_type], b"Content-Disposition": [b'attachment; filename="cdn.bin"'],
        }))


class FollowLocationTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(
            self, {"media_store_path": os.path.abspath(self.mktemp())}
        )
        _, self.token = self.hs.create_user("alice")
        self.cdn = _CannedAgent({b"https://cdn.remote.test/m/1?sig=abc": (b"bytes from the cdn", b"text/plain")})
        c = self.hs.components
        c.media.repository.set_remote(FederationMediaFetcher(c.federation.client, self.hs.reactor, self.cdn))

        async def handler(origin: str, content: Any, request: MatrixRequest, media_id: str) -> None:
            body = (b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\n"
                    b"Location: https://cdn.remote.test/m/" + media_id.encode() + b"?sig=abc\r\n\r\n\r\n--b--\r\n")
            respond_with_bytes(request, 200, body, b"multipart/mixed; boundary=b")

        self.remote.handle("GET", f"{FED}/download/(?P<media_id>[^/]+)", handler)

    def download(self, media_id: str) -> FakeChannel:
        return self.hs.request("GET", f"{CLIENT}/download/{REMOTE}/{media_id}", access_token=self.token)

    def test_location_is_followed(self) -> None:
        channel = self.download("1")
        self.assertEqual(channel.code, 200, channel.result_body)
        self.assertEqual(channel.result_body, b"bytes from the cdn")
        self.assertEqual(channel.headers.getRawHeaders(b"Content-Type"), [b"text/plain"])
        self.assertEqual(self.cdn.requested, [b"https://cdn.remote.test/m/1?sig=abc"])
        cached = self.hs.run(self.hs.components.media.store.get_remote_media(REMOTE, "1"))
        assert cached is not None
        self.assertEqual(cached.upload_name, "cdn.bin")

    def test_location_404_is_404(self) -> None:
        channel = self.download("2")
        self.assertEqual((channel.code, channel.json_body["errcode"]), (404, "M_NOT_FOUND"))


class MultipartParserTestCase(unittest.TestCase):
    def test_round_trip(self) -> None:
        body, content_type = multipart_body(b"\r\n--b0und-ish\r\n", "text/plain", 'inline; filename="a"')
        metadata, part = parse_media_multipart(content_type, body)
        self.assertEqual((metadata, part.body, part.content_type), ({}, b"\r\n--b0und-ish\r\n", "text/plain"))

    def test_preamble_epilogue_and_quoted_boundary(self) -> None:
        body = (b"preamble\r\n--x y\r\nContent-Type: application/json\r\n\r\n{\"a\":1}\r\n--x y\r\n"
                b"Location: https://cdn.example/m\r\n\r\n\r\n--x y--\r\nepilogue")
        metadata, part = parse_media_multipart('multipart/mixed; boundary="x y"', body)
        self.assertEqual((metadata, part.location, part.body), ({"a": 1}, "https://cdn.example/m", b""))

    def test_rejects(self) -> None:
        good, ctype = multipart_body(b"data", "text/plain")
        cases: list[tuple[str, bytes]] = [
            ("text/plain", good),
            ("multipart/mixed", good),
            (ctype, good.replace(b"--b0und4ry--", b"--b0und4ry")),  # no close delimiter
            (ctype, good.replace(b"application/json", b"text/plain")),
            (ctype, good.replace(b"{}", b"[]")),
            ("multipart/mixed; boundary=b0und4ry", good.split(b"\r\n--b0und4ry\r\nContent-Type: text")[0]
             + b"\r\n--b0und4ry--\r\n"),  # one part only
        ]
        for content_type, body in cases:
            with self.assertRaises(MultipartError, msg=repr((content_type, body[:60]))):
                parse_media_multipart(content_type, body)
