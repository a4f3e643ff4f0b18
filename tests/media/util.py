"""Shared helpers for media tests: a test homeserver with its own media store, images made by Pillow."""

from __future__ import annotations

import io
import os
import struct
import urllib.parse
import zlib
from typing import Any, Mapping, Optional

from PIL import Image
from twisted.trial.unittest import TestCase

from matrixd.testing.homeserver import TestHomeserver, make_homeserver


def make_media_homeserver(testcase: TestCase, config: Optional[Mapping[str, Any]] = None) -> TestHomeserver:
    """A test homeserver whose media store is a fresh temporary directory of this test."""
    store = os.path.abspath(testcase.mktemp())
    return make_homeserver(testcase, {"media_store_path": store, **(config or {})})


def image_bytes(width: int, height: int, fmt: str = "PNG", mode: str = "RGB", exif_orientation: Optional[int] = None) -> bytes:
    """A real image: a horizontal gradient, so resizing has something to do."""
    im = Image.new(mode, (width, height))
    if mode in ("RGB", "RGBA"):
        pixels = im.load()
        assert pixels is not None
        for x in range(width):
            shade = int(255 * x / max(1, width - 1))
            for y in range(0, height, max(1, height // 8)):
                pixels[x, y] = (shade, 255 - shade, 128) if mode == "RGB" else (shade, 255 - shade, 128, 200)
    buf = io.BytesIO()
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(buf, format=fmt, exif=exif.tobytes())
    else:
        im.save(buf, format=fmt)
    return buf.getvalue()


def animated_gif_bytes(width: int, height: int, frames: int = 3) -> bytes:
    images = [Image.new("RGB", (width, height), (40 * i, 100, 200 - 40 * i)) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=80, loop=0)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` but holds almost no data (a decompression bomb shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10))
            + chunk(b"IEND", b""))


def open_image(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def upload(hs: TestHomeserver, token: str, data: bytes, content_type: Optional[str] = "image/png",
           filename: Optional[str] = None) -> str:
    """POST /upload and return the media id (asserting success)."""
    path = "/_matrix/media/v3/upload"
    if filename is not None:
        path += "?filename=" + urllib.parse.quote(filename)
    headers: dict[str | bytes, str | bytes] = {"Content-Type": content_type} if content_type is not None else {}
    channel = hs.request("POST", path, data, access_token=token, headers=headers)
    assert channel.code == 200, channel.result_body
    uri: str = channel.json_body["content_uri"]
    prefix = f"mxc://{hs.server_name}/"
    assert uri.startswith(prefix), uri
    return uri[len(prefix):]
