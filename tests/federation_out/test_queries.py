"""Queries both ways: user/devices, user/keys query and claim, OpenID, hierarchy, remote profiles and aliases."""

from __future__ import annotations

import urllib.parse
from typing import Any

from twisted.trial import unittest

from matrixd.http.request import MatrixRequest
from matrixd.http.server import ServletResult
from tests.e2e_keys.helpers import CrossSigningKeys, FakeDevice
from tests.federation_out.utils import REMOTE, create_room, join, pump, send_event, started_homeserver

V3 = "/_matrix/client/v3"
FED = "/_matrix/federation/v1"
BOB = f"@bob:{REMOTE}"


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class InboundQueryTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = started_homeserver(self)
        self.alice, self.token = self.hs.create_user("alice")
        self.dev = FakeDevice(self.alice, "TESTDEVICE", self.token)
        body = {"device_keys": self.dev.device_keys(), "one_time_keys": self.dev.one_time_keys(1)}
        ch = self.hs.request("POST", f"{V3}/keys/upload", body, access_token=self.token)
        self.assertEqual(ch.code, 200, ch.result_body)
        self.cs = CrossSigningKeys(self.alice)
        ch = self.hs.request("POST", f"{V3}/keys/device_signing/upload", self.cs.upload_body(), access_token=self.token)
        self.assertEqual(ch.code, 200, ch.result_body)

    def test_user_devices(self) -> None:
        """GET /user/devices lists the devices with keys, a stream id and the public cross-signing keys."""
        ch = self.remote.request(self.hs, "GET", f"{FED}/user/devices/{q(self.alice)}")
        self.assertEqual(ch.code, 200, ch.result_body)
        body = ch.json_body
        self.assertEqual(body["user_id"], self.alice)
        self.assertGreater(body["stream_id"], 0)
        self.assertEqual([d["device_id"] for d in body["devices"]], ["TESTDEVICE"])
        self.assertEqual(body["devices"][0]["keys"]["keys"], self.dev.device_keys()["keys"])
        self.assertEqual(body["master_key"]["usage"], ["master"])
        self.assertEqual(body["self_signing_key"]["usage"], ["self_signing"])
        self.assertNotIn("user_signing_key", body)

    def test_user_devices_of_remote_user_refused(self) -> None:
        """GET /user/devices for a user of another server is a 400."""
        ch = self.remote.request(self.hs, "GET", f"{FED}/user/devices/{q(BOB)}")
        self.assertEqual(ch.code, 400, ch.result_body)

    def test_user_devices_needs_signature(self) -> None:
        """The endpoint refuses unsigned requests."""
        ch = self.hs.request("GET", f"{FED}/user/devices/{q(self.alice)}")
        self.assertEqual(ch.code, 401, ch.result_body)

    def test_keys_query(self) -> None:
        """POST /user/keys/query answers for our users only, without user-signing keys."""
        ch = self.remote.request(self.hs, "POST", f"{FED}/user/keys/query",
                                 {"device_keys": {self.alice: [], "@z:else.test": []}})
        self.assertEqual(ch.code, 200, ch.result_body)
        body = ch.json_body
        self.assertEqual(sorted(body["device_keys"]), [self.alice])
        self.assertIn("TESTDEVICE", body["device_keys"][self.alice])
        self.assertIn(self.alice, body["master_keys"])
        self.assertNotIn("user_signing_keys", body)

    def test_keys_claim(self) -> None:
        """POST /user/keys/claim hands out one of our device's one-time keys once."""
        body = {"one_time_keys": {self.alice: {"TESTDEVICE": "signed_curve25519"}}}
        ch = self.remote.request(self.hs, "POST", f"{FED}/user/keys/claim", body)
        self.assertEqual(ch.code, 200, ch.result_body)
        claimed = ch.json_body["one_time_keys"][self.alice]["TESTDEVICE"]
        self.assertEqual(list(claimed), ["signed_curve25519:AAAA0"])
        again = self.remote.request(self.hs, "POST", f"{FED}/user/keys/claim", body)
        self.assertEqual(again.json_body["one_time_keys"], {})

    def test_keys_query_bad_body(self) -> None:
        """A query without a device_keys object is a 400."""
        ch = self.remote.request(self.hs, "POST", f"{FED}/user/keys/query", {"device_keys": []})
        self.assertEqual(ch.code, 400, ch.result_body)

    def test_openid(self) -> None:
        """A token from request_token resolves to its user at /openid/userinfo until it expires."""
        ch = self.hs.request("POST", f"{V3}/user/{q(self.alice)}/openid/request_token", {}, access_token=self.token)
        self.assertEqual(ch.code, 200, ch.result_body)
        self.assertEqual(ch.json_body["token_type"], "Bearer")
        self.assertEqual(ch.json_body["matrix_server_name"], "test")
        token = ch.json_body["access_token"]
        info = self.hs.request("GET", f"{FED}/openid/userinfo?access_token={q(token)}")
        self.assertEqual(info.code, 200, info.result_body)
        self.assertEqual(info.json_body, {"sub": self.alice})
        self.hs.advance(ch.json_body["expires_in"] + 1)
        expired = self.hs.request("GET", f"{FED}/openid/userinfo?access_token={q(token)}")
        self.assertEqual(expired.code, 401)
        self.assertEqual(expired.json_body["errcode"], "M_UNKNOWN_TOKEN")

    def test_openid_for_someone_else_refused(self) -> None:
        """Users may only request OpenID tokens for themselves."""
        ch = self.hs.request("POST", f"{V3}/user/{q('@other:test')}/openid/request_token", {},
                             access_token=self.token)
        self.assertEqual(ch.code, 403, ch.result_body)

    def test_hierarchy(self) -> None:
        """/hierarchy returns the space, its accessible children, and private children as inaccessible."""
        space = create_room(self.hs, self.alice, {"preset": "public_chat", "name": "Space",
                                                  "creation_content": {"type": "m.space"}})
        public = create_room(self.hs, self.alice, {"preset": "public_chat", "name": "Pub"})
        private = create_room(self.hs, self.alice, {"preset": "private_chat"})
        removed = create_room(self.hs, self.alice, {"preset": "public_chat"})
        for child, content in ((public, {"via": ["test"], "suggested": True}), (private, {"via": ["test"]}),
                               (removed, {})):
            send_event(self.hs, space, self.alice, "m.space.child", content, state_key=child)
        ch = self.remote.request(self.hs, "GET", f"{FED}/hierarchy/{q(space)}")
        self.assertEqual(ch.code, 200, ch.result_body)
        body = ch.json_body
        self.assertEqual(body["room"]["room_id"], space)
        self.assertEqual(body["room"]["room_type"], "m.space")
        self.assertEqual(body["room"]["name"], "Space")
        self.assertEqual(sorted(e["state_key"] for e in body["room"]["children_state"]), sorted([public, private]))
        self.assertTrue(all("origin_server_ts" in e for e in body["room"]["children_state"]))
        self.assertEqual([c["room_id"] for c in body["children"]], [public])
        self.assertEqual(body["children"][0]["name"], "Pub")
        self.assertEqual(body["children"][0]["num_joined_members"], 1)
        self.assertEqual(body["inaccessible_children"], [private])
        suggested = self.remote.request(self.hs, "GET", f"{FED}/hierarchy/{q(space)}?suggested_only=true")
        self.assertEqual([e["state_key"] for e in suggested.json_body["room"]["children_state"]], [public])

    def test_hierarchy_private_or_unknown_room(self) -> None:
        """/hierarchy of a room the origin cannot join, or does not exist, is a 404."""
        private = create_room(self.hs, self.alice, {"preset": "private_chat"})
        for room in (private, "!nope:test"):
            ch = self.remote.request(self.hs, "GET", f"{FED}/hierarchy/{q(room)}")
            self.assertEqual(ch.code, 404, ch.result_body)


class OutboundQueryTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = started_homeserver(self)
        self.alice, self.token = self.hs.create_user("alice")
        self.room_id = create_room(self.hs, self.alice, {"preset": "public_chat"})
        join(self.hs, self.room_id, BOB)
        pump(self.hs)
        self.query_count = 0

        async def keys_query(origin: str, content: dict[str, Any], request: MatrixRequest) -> ServletResult:
            self.query_count += 1
            return 200, {"device_keys": {BOB: {"BD": {"user_id": BOB, "device_id": "BD", "keys": {"k": "v"},
                                                      "unsigned": {"device_display_name": "bob's"}}},
                                         "@evil:test": {"X": {}}},
                         "master_keys": {BOB: {"user_id": BOB, "usage": ["master"], "keys": {"ed25519:m": "m"}}}}

        async def keys_claim(origin: str, content: dict[str, Any], request: MatrixRequest) -> ServletResult:
            return 200, {"one_time_keys": {BOB: {"BD": {"signed_curve25519:1": {"key": "abc"}}}}}

        self.remote.handle("POST", f"{FED}/user/keys/query", keys_query)
        self.remote.handle("POST", f"{FED}/user/keys/claim", keys_claim)

    def client(self, method: str, path: str, body: Any = None) -> Any:
        ch = self.hs.request(method, V3 + path, body, access_token=self.token, await_result=False)
        pump(self.hs, 3)
        ch.await_result()
        return ch

    def test_keys_query_over_federation_then_cache(self) -> None:
        """/keys/query for a remote user asks its server once; later queries come from the fresh cache."""
        ch = self.client("POST", "/keys/query", {"device_keys": {BOB: []}})
        self.assertEqual(ch.code, 200, ch.result_body)
        self.assertEqual(ch.json_body["device_keys"][BOB]["BD"]["keys"], {"k": "v"})
        self.assertNotIn("@evil:test", ch.json_body["device_keys"])
        self.assertEqual(ch.json_body["failures"], {})
        again = self.client("POST", "/keys/query", {"device_keys": {BOB: []}})
        self.assertEqual(self.query_count, 1)
        self.assertEqual(again.json_body["device_keys"][BOB]["BD"]["unsigned"], {"device_display_name": "bob's"})
        self.assertEqual(again.json_body["master_keys"][BOB]["usage"], ["master"])
        # A device list update marks the cache stale when it cannot be applied: the server is asked again.
        self.hs.run(self.hs.components.federation_out.remote_devices.mark_stale(BOB))
        self.client("POST", "/keys/query", {"device_keys": {BOB: []}})
        self.assertEqual(self.query_count, 2)

    def test_keys_query_unreachable_is_failure(self) -> None:
        """An unreachable server is listed under failures."""
        ch = self.client("POST", "/keys/query", {"device_keys": {"@x:nowhere.test": []}})
        self.assertEqual(ch.code, 200, ch.result_body)
        self.assertIn("nowhere.test", ch.json_body["failures"])

    def test_keys_claim_over_federation(self) -> None:
        """/keys/claim for a remote device is answered by its server."""
        ch = self.client("POST", "/keys/claim", {"one_time_keys": {BOB: {"BD": "signed_curve25519"}}})
        self.assertEqual(ch.code, 200, ch.result_body)
        self.assertEqual(ch.json_body["one_time_keys"][BOB]["BD"], {"signed_curve25519:1": {"key": "abc"}})

    def test_remote_profile(self) -> None:
        """GET /profile of a remote user is fetched from its server; a 404 there is a 404 here."""
        async def profile(origin: str, content: None, request: MatrixRequest) -> ServletResult:
            args = {k.decode(): [v.decode() for v in vs] for k, vs in (request.args or {}).items()}
            if args["user_id"] == [BOB]:
                return 200, {"displayname": "Bob", "avatar_url": "mxc://remote.test/a"}
            return 404, {"errcode": "M_NOT_FOUND", "error": "no"}

        self.remote.handle("GET", f"{FED}/query/profile", profile)
        ch = self.client("GET", f"/profile/{q(BOB)}")
        self.assertEqual(ch.code, 200, ch.result_body)
        self.assertEqual(ch.json_body["displayname"], "Bob")
        field = self.client("GET", f"/profile/{q(BOB)}/displayname")
        self.assertEqual(field.json_body, {"displayname": "Bob"})
        missing = self.client("GET", f"/profile/{q('@nobody:' + REMOTE)}")
        self.assertEqual(missing.code, 404, missing.result_body)

    def test_remote_alias(self) -> None:
        """GET /directory/room/{alias} of a remote alias asks the alias's server."""
        async def directory(origin: str, content: None, request: MatrixRequest) -> ServletResult:
            args = {k.decode(): [v.decode() for v in vs] for k, vs in (request.args or {}).items()}
            if args["room_alias"] == [f"#lobby:{REMOTE}"]:
                return 200, {"room_id": "!r:remote.test", "servers": [REMOTE]}
            return 404, {"errcode": "M_NOT_FOUND", "error": "no"}

        self.remote.handle("GET", f"{FED}/query/directory", directory)
        ch = self.client("GET", f"/directory/room/{q('#lobby:' + REMOTE)}")
        self.assertEqual(ch.code, 200, ch.result_body)
        self.assertEqual(ch.json_body, {"room_id": "!r:remote.test", "servers": [REMOTE]})
        missing = self.client("GET", f"/directory/room/{q('#none:' + REMOTE)}")
        self.assertEqual(missing.code, 404, missing.result_body)
