"""Admin media endpoints, event reports, destinations, server version and background updates."""

from __future__ import annotations

import os

from tests.admin.base import V3, AdminTestCase


class MediaAdminTests(AdminTestCase):
    def upload(self, data: bytes = b"hello") -> str:
        ch = self.req("POST", "/_matrix/media/v3/upload?filename=a.txt", data, self.user_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        uri: str = ch.json_body["content_uri"]
        return uri

    def media_path(self, media_id: str) -> str:
        from matrixd.media.storage import FileLocation
        return self.hs.components.media.storage.path_for(FileLocation(media_id))

    def test_room_media_and_quarantine(self) -> None:
        """A room's media are listed; quarantining the room's media counts them; protected media are skipped."""
        room = self.create_room(self.user_tok)
        uri1, uri2 = self.upload(b"one"), self.upload(b"two")
        for i, uri in enumerate((uri1, uri2, "mxc://other.example/abc")):
            ch = self.req("PUT", f"{V3}/rooms/{room}/send/m.room.message/m{i}",
                          {"msgtype": "m.file", "body": "f", "url": uri}, self.user_tok)
            self.assertEqual(ch.code, 200)
        body = self.admin("GET", f"/v1/room/{room}/media")
        self.assertEqual((sorted(body["local"]), body["remote"]), (sorted([uri1, uri2]), ["mxc://other.example/abc"]))
        media1 = uri1.rsplit("/", 1)[1]
        self.admin("POST", f"/v1/media/protect/{media1}", {})
        self.assertEqual(self.admin("POST", f"/v1/room/{room}/media/quarantine", {}), {"num_quarantined": 2})
        store = self.hs.components.admin.store
        self.assertFalse(self.hs.run(store.is_quarantined("test", media1)))
        self.assertTrue(self.hs.run(store.is_quarantined("other.example", "abc")))
        self.admin("POST", "/v1/media/unquarantine/other.example/abc", {})
        self.assertFalse(self.hs.run(store.is_quarantined("other.example", "abc")))
        self.admin("POST", "/v1/media/protect/unknownmedia", {}, code=404)

    def test_user_quarantine(self) -> None:
        """Quarantining a user's media quarantines each of their uploads once."""
        self.upload(b"a")
        self.upload(b"b")
        self.assertEqual(self.admin("POST", "/v1/user/@bob:test/media/quarantine", {}), {"num_quarantined": 2})
        self.assertEqual(self.admin("POST", "/v1/user/@bob:test/media/quarantine", {}), {"num_quarantined": 0})

    def test_delete_one_and_before(self) -> None:
        """DELETE media removes row and file; bulk delete honours before_ts, size_gt and protection."""
        media1 = self.upload(b"x" * 10).rsplit("/", 1)[1]
        self.assertTrue(os.path.exists(self.media_path(media1)))
        self.assertEqual(self.admin("DELETE", f"/v1/media/test/{media1}"), {"deleted_media": [media1], "total": 1})
        self.assertFalse(os.path.exists(self.media_path(media1)))
        self.assertEqual(self.req("GET", f"/_matrix/client/v1/media/download/test/{media1}", None,
                                  self.user_tok).code, 404)
        self.admin("DELETE", f"/v1/media/test/{media1}", code=404)
        self.admin("DELETE", "/v1/media/other.example/abc", code=400)
        small = self.upload(b"s").rsplit("/", 1)[1]
        big = self.upload(b"b" * 100).rsplit("/", 1)[1]
        kept = self.upload(b"k" * 100).rsplit("/", 1)[1]
        self.admin("POST", f"/v1/media/protect/{kept}", {})
        self.hs.advance(5)
        now = self.hs.components.clock.time_msec()
        body = self.admin("POST", f"/v1/media/delete?before_ts={now}&size_gt=50")
        self.assertEqual(body, {"deleted_media": [big], "total": 1})
        self.assertEqual(self.admin("POST", f"/v1/media/test/delete?before_ts={now}")["deleted_media"], [small])
        self.admin("POST", "/v1/media/delete", code=400)
        self.admin("POST", "/v1/media/elsewhere/delete?before_ts=1", code=400)

    def test_purge_media_cache(self) -> None:
        """purge_media_cache forgets remote media fetched before before_ts."""
        media = self.hs.components.media.store
        self.hs.run(media.store_remote_media(server_name="other.example", media_id="abc", media_type="text/plain",
                                             media_length=3, upload_name=None, sha256="00", authenticated=True,
                                             image=None))
        self.hs.advance(5)
        now = self.hs.components.clock.time_msec()
        self.assertEqual(self.admin("POST", f"/v1/purge_media_cache?before_ts={now}"), {"deleted": 1})
        self.assertIsNone(self.hs.run(media.get_remote_media("other.example", "abc")))
        self.admin("POST", "/v1/purge_media_cache", code=400)


class MiscAdminTests(AdminTestCase):
    def test_event_reports(self) -> None:
        """Event reports are listed, read (with the event) and deleted."""
        room = self.create_room(self.user_tok, preset="public_chat")
        self.assertEqual(self.join(self.admin_tok, room).code, 200)
        event_id = self.send(self.user_tok, room, "bad", "bad")
        ch = self.req("POST", f"{V3}/rooms/{room}/report/{event_id}", {"reason": "spam"}, self.admin_tok)
        self.assertEqual(ch.code, 200, ch.json_body)
        body = self.admin("GET", "/v1/event_reports")
        self.assertEqual(body["total"], 1)
        report = body["event_reports"][0]
        self.assertEqual((report["event_id"], report["reason"], report["user_id"]), (event_id, "spam", self.admin_id))
        one = self.admin("GET", f"/v1/event_reports/{report['id']}")
        self.assertEqual((one["sender"], one["event_json"]["content"]["body"]), (self.user_id, "bad"))
        self.assertEqual(self.admin("GET", f"/v1/event_reports?room_id={room}")["total"], 1)
        self.admin("DELETE", f"/v1/event_reports/{report['id']}")
        self.admin("GET", f"/v1/event_reports/{report['id']}", code=404)
        self.admin("GET", "/v1/event_reports/abc", code=400)

    def test_version_updates_destinations(self) -> None:
        """server_version, background_updates/status answer; with no federation yet no destination is known."""
        self.assertIn("server_version", self.admin("GET", "/v1/server_version"))
        self.assertEqual(self.admin("GET", "/v1/background_updates/status"), {"enabled": True, "current_updates": {}})
        self.assertEqual(self.admin("GET", "/v1/federation/destinations"), {"destinations": [], "total": 0})
        self.admin("GET", "/v1/federation/destinations/example.org", code=404)
        self.admin("POST", "/v1/federation/destinations/example.org/reset_connection", {}, code=404)
