"""Server-side key backups: versions, keys at three levels, replacement rules, etag/count, errors."""

from __future__ import annotations

from typing import Any

from tests.e2e_keys.helpers import E2ETestCase

ALG = "m.megolm_backup.v1.curve25519-aes-sha2"
ROOM = "!room:test"


def key(fmi: int = 0, fc: int = 0, verified: bool = False, tag: str = "a") -> dict[str, Any]:
    return {"first_message_index": fmi, "forwarded_count": fc, "is_verified": verified,
            "session_data": {"ciphertext": tag, "ephemeral": "e", "mac": "m"}}


class KeyBackupTests(E2ETestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.make_device("alice", "ADEV")
        self.bob = self.make_device("bob", "BDEV")

    def create(self, auth_data: dict[str, Any] | None = None, token: str | None = None) -> str:
        body = self.post("/room_keys/version", {"algorithm": ALG, "auth_data": auth_data or {"public_key": "pk"}},
                         token or self.alice.token).json_body
        version: str = body["version"]
        return version

    def put_session(self, version: str, session: str, data: dict[str, Any], expect: int = 200) -> Any:
        return self.put(f"/room_keys/keys/{ROOM}/{session}?version={version}", data, self.alice.token,
                        expect).json_body

    def test_version_lifecycle(self) -> None:
        """Create, get latest and by id, update auth_data, delete; versions are never reused."""
        self.get("/room_keys/version", self.alice.token, 404)
        v1 = self.create()
        info = self.get("/room_keys/version", self.alice.token).json_body
        self.assertEqual(info, {"algorithm": ALG, "auth_data": {"public_key": "pk"}, "count": 0, "etag": "0",
                                "version": v1})
        v2 = self.create({"public_key": "pk2"})
        self.assertNotEqual(v1, v2)
        self.assertEqual(self.get("/room_keys/version", self.alice.token).json_body["version"], v2)
        self.assertEqual(self.get(f"/room_keys/version/{v1}", self.alice.token).json_body["auth_data"],
                         {"public_key": "pk"})
        self.put(f"/room_keys/version/{v2}", {"algorithm": ALG, "auth_data": {"public_key": "new"}, "version": v2},
                 self.alice.token)
        self.assertEqual(self.get(f"/room_keys/version/{v2}", self.alice.token).json_body["auth_data"],
                         {"public_key": "new"})
        self.delete(f"/room_keys/version/{v2}", self.alice.token)
        self.delete(f"/room_keys/version/{v2}", self.alice.token)  # already deleted: still 200
        self.get(f"/room_keys/version/{v2}", self.alice.token, 404)
        self.assertEqual(self.get("/room_keys/version", self.alice.token).json_body["version"], v1)
        v3 = self.create()
        self.assertEqual(int(v3), int(v2) + 1)
        # Other users see none of it.
        self.get("/room_keys/version", self.bob.token, 404)
        self.get(f"/room_keys/version/{v1}", self.bob.token, 404)
        self.delete("/room_keys/version/999", self.alice.token, 404)
        self.delete("/room_keys/version/abc", self.alice.token, 404)

    def test_update_rules(self) -> None:
        """The algorithm must match; a body version must match the path; unknown versions are 404."""
        v1 = self.create()
        ch = self.put(f"/room_keys/version/{v1}", {"algorithm": "other", "auth_data": {}}, self.alice.token, 400)
        self.assertEqual(ch.json_body["errcode"], "M_INVALID_PARAM")
        ch = self.put(f"/room_keys/version/{v1}", {"algorithm": ALG, "auth_data": {}, "version": "77"},
                      self.alice.token, 400)
        self.assertEqual(ch.json_body["errcode"], "M_INVALID_PARAM")
        self.put("/room_keys/version/77", {"algorithm": ALG, "auth_data": {}}, self.alice.token, 404)
        self.put(f"/room_keys/version/{v1}", {"algorithm": ALG}, self.alice.token, 400)
        self.post("/room_keys/version", {"auth_data": {}}, self.alice.token, 400)
        self.post("/room_keys/version", {"algorithm": ALG, "auth_data": "x"}, self.alice.token, 400)

    def test_keys_three_levels(self) -> None:
        """Keys can be put, read and deleted per session, per room and for the whole backup."""
        v = self.create()
        res = self.put_session(v, "s1", key())
        self.assertEqual(res, {"etag": "1", "count": 1})
        res = self.put(f"/room_keys/keys/{ROOM}?version={v}", {"sessions": {"s2": key(), "s3": key()}},
                       self.alice.token).json_body
        self.assertEqual(res["count"], 3)
        res = self.put(f"/room_keys/keys?version={v}", {"rooms": {"!other:test": {"sessions": {"s4": key()}}}},
                       self.alice.token).json_body
        self.assertEqual(res["count"], 4)
        self.assertEqual(self.get(f"/room_keys/keys/{ROOM}/s1?version={v}", self.alice.token).json_body, key())
        self.assertEqual(sorted(self.get(f"/room_keys/keys/{ROOM}?version={v}", self.alice.token)
                                .json_body["sessions"]), ["s1", "s2", "s3"])
        everything = self.get(f"/room_keys/keys?version={v}", self.alice.token).json_body
        self.assertEqual(sorted(everything["rooms"]), ["!other:test", ROOM])
        self.assertEqual(self.get(f"/room_keys/keys/!none:test?version={v}", self.alice.token).json_body,
                         {"sessions": {}})
        self.get(f"/room_keys/keys/{ROOM}/nope?version={v}", self.alice.token, 404)
        info = self.get(f"/room_keys/version/{v}", self.alice.token).json_body
        self.assertEqual(info["count"], 4)

        etag = info["etag"]
        res = self.delete(f"/room_keys/keys/{ROOM}/s1?version={v}", self.alice.token).json_body
        self.assertEqual(res["count"], 3)
        self.assertNotEqual(res["etag"], etag)
        self.assertEqual(self.delete(f"/room_keys/keys/{ROOM}?version={v}", self.alice.token).json_body["count"], 1)
        self.assertEqual(self.delete(f"/room_keys/keys?version={v}", self.alice.token).json_body["count"], 0)
        self.assertEqual(self.get(f"/room_keys/keys?version={v}", self.alice.token).json_body, {"rooms": {}})

    def test_replacement_rules(self) -> None:
        """A stored key is replaced only by a verified one, else a lower first index, else fewer forwards."""
        v = self.create()
        self.put_session(v, "s", key(fmi=5, fc=2, verified=False, tag="orig"))

        def stored() -> str:
            tag: str = self.get(f"/room_keys/keys/{ROOM}/s?version={v}", self.alice.token).json_body[
                "session_data"]["ciphertext"]
            return tag

        etag = self.put_session(v, "s", key(fmi=6, fc=0, tag="worse-index"))["etag"]
        self.assertEqual(stored(), "orig")
        self.assertEqual(self.put_session(v, "s", key(fmi=5, fc=3, tag="more-forwards"))["etag"], etag)
        self.assertEqual(self.put_session(v, "s", key(fmi=5, fc=2, tag="equal"))["etag"], etag)
        self.assertEqual(stored(), "orig")
        self.put_session(v, "s", key(fmi=5, fc=1, tag="fewer-forwards"))
        self.assertEqual(stored(), "fewer-forwards")
        self.put_session(v, "s", key(fmi=1, fc=9, tag="lower-index"))
        self.assertEqual(stored(), "lower-index")
        self.put_session(v, "s", key(fmi=9, fc=9, verified=True, tag="verified"))
        self.assertEqual(stored(), "verified")
        self.put_session(v, "s", key(fmi=0, fc=0, verified=False, tag="unverified-better-index"))
        self.assertEqual(stored(), "verified")

    def test_wrong_version(self) -> None:
        """Writing to an old version is 403 M_WRONG_ROOM_KEYS_VERSION with current_version; unknown is 404."""
        old = self.create()
        current = self.create()
        body = self.put_session(old, "s", key(), 403)
        self.assertEqual(body["errcode"], "M_WRONG_ROOM_KEYS_VERSION")
        self.assertEqual(body["current_version"], current)
        self.assertEqual(self.put_session("12345", "s", key(), 404)["errcode"], "M_NOT_FOUND")
        self.put_session("abc", "s", key(), 404)
        self.get("/room_keys/keys?version=12345", self.alice.token, 404)
        self.delete("/room_keys/keys?version=12345", self.alice.token, 404)
        self.get("/room_keys/keys", self.alice.token, 400)

    def test_no_backup_is_404(self) -> None:
        """Writing keys with no backup at all is 404."""
        self.put_session("1", "s", key(), 404)

    def test_bad_key_data(self) -> None:
        """Malformed key data is 400 and stores nothing."""
        v = self.create()
        for data in ({"first_message_index": -1, "forwarded_count": 0, "is_verified": False, "session_data": {}},
                     {**key(), "is_verified": "yes"}, {**key(), "session_data": "x"}, {**key(), "forwarded_count": 1.5},
                     {"first_message_index": 0}):
            self.put_session(v, "s", data, 400)
        self.put(f"/room_keys/keys/{ROOM}?version={v}", {"sessions": "x"}, self.alice.token, 400)
        self.put(f"/room_keys/keys?version={v}", {"rooms": {ROOM: {"sessions": {"s": {}}}}}, self.alice.token, 400)
        self.assertEqual(self.get(f"/room_keys/version/{v}", self.alice.token).json_body["count"], 0)

    def test_deleting_version_deletes_keys(self) -> None:
        """Deleting a backup version deletes its keys."""
        v = self.create()
        self.put_session(v, "s", key())
        self.delete(f"/room_keys/version/{v}", self.alice.token)
        self.assertEqual(self.hs.run(self.e2e.stores.room_keys.count_keys(self.alice.user_id, int(v))), 0)
