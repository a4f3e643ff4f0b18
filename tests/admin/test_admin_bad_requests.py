"""The bad-request corpus sent to every admin endpoint *as an admin*: never a 5xx, always a Matrix error body."""

from __future__ import annotations

from tests.admin.base import AdminTestCase
from tests.rest.test_bad_requests import BAD_QUERY, WRONG_TYPES, concrete_path

BAD_BODIES = [b"{not json", b"[]", b'"s"', b'{"a": NaN}', b"\xff\xfe{}"]
# Keys admin endpoints read, with values of the wrong type.
ADMIN_WRONG_TYPES = {**WRONG_TYPES, "admin": "x", "deactivated": "x", "erase": 1, "block": "x", "purge": 1,
                     "new_room_user_id": 5, "room_name": 1, "message": [], "user_type": 5, "locked": "x",
                     "messages_per_second": "x", "burst_count": [], "valid_until_ms": "x", "purge_up_to_ts": "x",
                     "purge_up_to_event_id": 5, "delete_local_events": "x", "state_key": 5, "threepids": "x"}


class AdminBadRequestTests(AdminTestCase):
    def test_corpus_as_admin(self) -> None:
        """Bad queries, bodies and field types to every /_synapse/admin route as an admin answer < 500."""
        seen = set()
        for method, pattern, _name in self.hs.site.resource.routes():  # type: ignore[attr-defined]
            if not pattern.pattern.startswith("^/_synapse/admin") or "/register" in pattern.pattern:
                continue
            path = concrete_path(pattern.pattern)
            self.assertIsNotNone(path, pattern.pattern)
            assert path is not None
            path = path.replace("@alice:test", "@bob:test")
            if (method, path) in seen:
                continue
            seen.add((method, path))
            attempts: list[tuple[str, object]] = [(path + BAD_QUERY, None)]
            if method in ("POST", "PUT", "DELETE"):
                attempts += [(path, body) for body in BAD_BODIES]
                attempts.append((path, ADMIN_WRONG_TYPES))
            for target, body in attempts:
                ch = self.req(method, target, body, self.admin_tok)
                where = f"{method} {target} {body!r:.60} -> {ch.code} {ch.result_body[:200]!r}"
                self.assertLess(ch.code, 500, where)
                if ch.code >= 400:
                    self.assertTrue(str(ch.json_body.get("errcode", "")).startswith("M_"), where)
        self.assertGreater(len(seen), 40)
