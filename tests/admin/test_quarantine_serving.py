"""Quarantined media (local and cached remote) and their thumbnails are served to nobody."""

from __future__ import annotations

import os
from typing import Optional

from twisted.trial import unittest

from matrixd.http.server import JsonResource
from matrixd.media.area import MediaArea, build_media_area
from matrixd.media.storage import FileLocation
from matrixd.rest.media import build_media_servlets
from matrixd.testing.http import FakeChannel, make_request, make_site
from tests.admin.base import ADMIN
from tests.media.test_remote import FakeRemoteFetcher
from tests.media.util import image_bytes, make_media_homeserver

PATHS = (
    "/_matrix/client/v1/media/download/{server}/{media}",
    "/_matrix/client/v1/media/thumbnail/{server}/{media}?width=32&height=32&method=crop",
    "/_matrix/media/v3/download/{server}/{media}",
    "/_matrix/media/v3/thumbnail/{server}/{media}?width=32&height=32&method=crop",
)


class LocalQuarantineServingTests(unittest.TestCase):
    def setUp(self) -> None:
        self.hs = make_media_homeserver(self, {"enable_authenticated_media": False})
        self.admin_id, self.admin_tok = self.hs.create_user("admin", admin=True)
        self.user_id, self.user_tok = self.hs.create_user("bob")
        ch = self.hs.request("POST", "/_matrix/media/v3/upload?filename=a.png", image_bytes(200, 100),
                             access_token=self.user_tok, headers={"Content-Type": "image/png"})
        self.assertEqual(ch.code, 200, ch.json_body)
        self.media_id = ch.json_body["content_uri"].rsplit("/", 1)[1]

    def codes(self) -> list[int]:
        return [self.hs.request("GET", p.format(server="test", media=self.media_id),
                                access_token=self.user_tok).code for p in PATHS]

    def test_quarantine_hides_media_and_thumbnails(self) -> None:
        """After quarantine every download and thumbnail endpoint is 404 M_NOT_FOUND; unquarantine restores."""
        self.assertEqual(self.codes(), [200, 200, 200, 200])
        ch = self.hs.request("POST", f"{ADMIN}/v1/media/quarantine/test/{self.media_id}", {},
                             access_token=self.admin_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(self.codes(), [404, 404, 404, 404])
        ch = self.hs.request("GET", PATHS[0].format(server="test", media=self.media_id), access_token=self.user_tok)
        self.assertEqual(ch.json_body["errcode"], "M_NOT_FOUND")
        self.hs.request("POST", f"{ADMIN}/v1/media/unquarantine/test/{self.media_id}", {},
                        access_token=self.admin_tok)
        self.assertEqual(self.codes(), [200, 200, 200, 200])

    def test_non_admin_cannot_quarantine(self) -> None:
        """A non-admin's quarantine request is 403 and the media stays served."""
        ch = self.hs.request("POST", f"{ADMIN}/v1/media/quarantine/test/{self.media_id}", {},
                             access_token=self.user_tok)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (403, "M_FORBIDDEN"))
        self.assertEqual(self.codes(), [200, 200, 200, 200])

    def test_delete_removes_content_and_thumbnails(self) -> None:
        """Deleting media removes its content file and every generated thumbnail; all endpoints then 404."""
        self.assertEqual(self.codes(), [200, 200, 200, 200])  # thumbnails now exist on disk
        storage = self.hs.components.media.storage
        location = FileLocation(self.media_id)
        thumbs = storage.thumbnail_dir_for(location)
        self.assertTrue(os.path.isdir(thumbs) and os.listdir(thumbs))
        ch = self.hs.request("DELETE", f"{ADMIN}/v1/media/test/{self.media_id}", access_token=self.admin_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertFalse(os.path.exists(storage.path_for(location)))
        self.assertFalse(os.path.exists(thumbs))
        self.assertEqual(self.codes(), [404, 404, 404, 404])

    def test_protected_media_still_served(self) -> None:
        """Protected media is skipped by quarantine and stays served."""
        self.hs.request("POST", f"{ADMIN}/v1/media/protect/{self.media_id}", {}, access_token=self.admin_tok)
        self.hs.request("POST", f"{ADMIN}/v1/user/{self.user_id}/media/quarantine", {}, access_token=self.admin_tok)
        self.assertEqual(self.codes(), [200, 200, 200, 200])


class RemoteQuarantineServingTests(unittest.TestCase):
    def setUp(self) -> None:
        self.hs = make_media_homeserver(self, {"max_upload_size": 200_000})
        _, self.token = self.hs.create_user("alice")
        self.remote = FakeRemoteFetcher()
        self.remote.files["farImage"] = (image_bytes(100, 100), "image/png", None)
        self.remote.files["notFetched"] = (b"never", "text/plain", None)
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

    def get(self, path: str, token: Optional[str] = None) -> FakeChannel:
        return make_request(self.hs.reactor, self.site, "GET", path, access_token=token or self.token)

    def test_cached_remote_media_hidden(self) -> None:
        """Cached remote media and its thumbnails are 404 once quarantined; nothing is fetched again."""
        self.assertEqual(self.get(PATHS[0].format(server="remote.example", media="farImage")).code, 200)
        self.hs.run(self.hs.components.admin.store.quarantine_media("remote.example", ["farImage"], "@a:test"))
        fetches = len(self.remote.fetches)
        for p in PATHS[:2]:
            ch = self.get(p.format(server="remote.example", media="farImage"))
            self.assertEqual((ch.code, ch.json_body["errcode"]), (404, "M_NOT_FOUND"))
        self.assertEqual(len(self.remote.fetches), fetches)

    def test_uncached_quarantined_remote_media_not_fetched(self) -> None:
        """Quarantined remote media not cached yet is 404 without asking its server."""
        self.hs.run(self.hs.components.admin.store.quarantine_media("remote.example", ["notFetched"], "@a:test"))
        self.assertEqual(self.get(PATHS[0].format(server="remote.example", media="notFetched")).code, 404)
        self.assertEqual(self.remote.fetches, [])
