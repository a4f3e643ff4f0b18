"""Every admin endpoint refuses non-admins with 403 M_FORBIDDEN and anonymous callers with 401."""

from __future__ import annotations

from tests.admin.base import ADMIN, AdminTestCase

ENDPOINTS = [
    ("GET", "/v2/users"), ("GET", "/v2/users/@bob:test"), ("PUT", "/v2/users/@x:test"),
    ("POST", "/v1/deactivate/@bob:test"), ("POST", "/v1/reset_password/@bob:test"),
    ("GET", "/v1/whois/@bob:test"), ("GET", "/v1/users/@bob:test/admin"), ("PUT", "/v1/users/@bob:test/admin"),
    ("POST", "/v1/users/@bob:test/shadow_ban"), ("DELETE", "/v1/users/@bob:test/shadow_ban"),
    ("GET", "/v1/users/@bob:test/override_ratelimit"), ("POST", "/v1/users/@bob:test/override_ratelimit"),
    ("DELETE", "/v1/users/@bob:test/override_ratelimit"), ("GET", "/v2/users/@bob:test/devices"),
    ("GET", "/v1/users/@bob:test/joined_rooms"), ("GET", "/v1/users/@bob:test/media"),
    ("POST", "/v1/users/@bob:test/login"),
    ("GET", "/v1/rooms"), ("GET", "/v1/rooms/!r:test"), ("DELETE", "/v1/rooms/!r:test"),
    ("GET", "/v1/rooms/!r:test/members"), ("GET", "/v1/rooms/!r:test/state"),
    ("GET", "/v1/rooms/!r:test/block"), ("PUT", "/v1/rooms/!r:test/block"),
    ("DELETE", "/v2/rooms/!r:test"), ("GET", "/v2/rooms/!r:test/delete_status"),
    ("GET", "/v2/rooms/delete_status/abc"), ("POST", "/v1/rooms/!r:test/make_room_admin"),
    ("POST", "/v1/purge_history/!r:test"), ("POST", "/v1/purge_history/!r:test/$e"),
    ("GET", "/v1/purge_history_status/abc"),
    ("GET", "/v1/room/!r:test/media"), ("POST", "/v1/media/quarantine/test/abc"),
    ("POST", "/v1/media/unquarantine/test/abc"), ("POST", "/v1/room/!r:test/media/quarantine"),
    ("POST", "/v1/user/@bob:test/media/quarantine"), ("POST", "/v1/media/protect/abc"),
    ("POST", "/v1/media/unprotect/abc"), ("DELETE", "/v1/media/test/abc"),
    ("POST", "/v1/media/delete?before_ts=1"), ("POST", "/v1/media/test/delete?before_ts=1"),
    ("POST", "/v1/purge_media_cache?before_ts=1"),
    ("GET", "/v1/event_reports"), ("GET", "/v1/event_reports/1"), ("DELETE", "/v1/event_reports/1"),
    ("GET", "/v1/federation/destinations"), ("GET", "/v1/federation/destinations/example.org"),
    ("POST", "/v1/federation/destinations/example.org/reset_connection"),
    ("GET", "/v1/background_updates/status"), ("GET", "/v1/server_version"), ("POST", "/v1/send_server_notice"),
]


class ForbiddenTests(AdminTestCase):
    def test_non_admin_forbidden_everywhere(self) -> None:
        """A non-admin gets 403 M_FORBIDDEN from every admin endpoint, and nothing changes."""
        for method, path in ENDPOINTS:
            body = {} if method in ("PUT", "POST", "DELETE") else None
            ch = self.req(method, ADMIN + path, body, self.user_tok)
            self.assertEqual((ch.code, ch.json_body.get("errcode")), (403, "M_FORBIDDEN"), (method, path))
        ch = self.req("GET", ADMIN + "/v2/users/@x:test", None, self.admin_tok)
        self.assertEqual(ch.code, 404)

    def test_anonymous_unauthorised(self) -> None:
        """Without an access token every admin endpoint answers 401 M_MISSING_TOKEN."""
        for method, path in ENDPOINTS:
            ch = self.req(method, ADMIN + path, {} if method != "GET" else None)
            self.assertEqual((ch.code, ch.json_body.get("errcode")), (401, "M_MISSING_TOKEN"), (method, path))
