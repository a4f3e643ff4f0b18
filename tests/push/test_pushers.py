"""Pushers: /pushers and /pushers/set, delivery to a gateway with badge counts, retries, rejections."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.trial import unittest
from twisted.web import resource, server

from matrixd.push.gateway import HttpPushGatewayClient
from matrixd.push.pool import MAX_ATTEMPTS
from tests.push.fake_gateway import FakeGateway
from tests.sync.helpers import SyncTestCase

URL = "https://push.example.org/_matrix/push/v1/notify"


def pusher_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "http", "app_id": "org.example.app.ios", "pushkey": "KEY1", "app_display_name": "Example",
        "device_display_name": "Bob's phone", "lang": "en", "data": {"url": URL, "custom": 1},
    }
    body.update(overrides)
    return body


class PusherTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.gateway = FakeGateway()
        self.push = self.hs.components.push
        self.push.pool.set_client(self.gateway)
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")
        self.room = self.create_room(self.alice, preset="public_chat")
        self.join(self.bob, self.room)
        self.join(self.user("carol")[0], self.room)

    def set_pusher(self, token: str, **overrides: Any) -> Any:
        return self.request("POST", "/pushers/set", token, pusher_body(**overrides))

    def pushers(self, token: str) -> list[dict[str, Any]]:
        body: list[dict[str, Any]] = self.request("GET", "/pushers", token).json_body["pushers"]
        return body

    def test_set_get_delete(self) -> None:
        """A pusher is listed as set, replaced by app id and pushkey, and deleted with kind null."""
        self.assertEqual(self.set_pusher(self.btok, profile_tag="tag").code, 200)
        self.assertEqual(self.pushers(self.btok), [{
            "pushkey": "KEY1", "kind": "http", "app_id": "org.example.app.ios", "app_display_name": "Example",
            "device_display_name": "Bob's phone", "lang": "en", "data": {"url": URL, "custom": 1},
            "profile_tag": "tag",
        }])
        self.set_pusher(self.btok, lang="fr")
        self.assertEqual([p["lang"] for p in self.pushers(self.btok)], ["fr"])
        self.set_pusher(self.btok, pushkey="KEY2")
        self.assertEqual(len(self.pushers(self.btok)), 2)
        ch = self.request("POST", "/pushers/set", self.btok, {"kind": None, "app_id": "org.example.app.ios",
                                                              "pushkey": "KEY1"})
        self.assertEqual(ch.code, 200)
        self.assertEqual([p["pushkey"] for p in self.pushers(self.btok)], ["KEY2"])

    def test_validation(self) -> None:
        """Missing fields, bad URLs, long app ids and unknown kinds are 400 and set nothing."""
        cases: list[tuple[dict[str, Any], str]] = [
            ({"lang": None}, "M_INVALID_PARAM"),
            ({"data": {"url": "https://push.example.org/notify"}}, "M_INVALID_PARAM"),
            ({"data": {"url": "ftp://push.example.org/_matrix/push/v1/notify"}}, "M_INVALID_PARAM"),
            ({"data": {}}, "M_MISSING_PARAM"),
            ({"data": {"url": URL, "format": "full"}}, "M_INVALID_PARAM"),
            ({"app_id": "x" * 65}, "M_INVALID_PARAM"),
            ({"pushkey": "k" * 513}, "M_INVALID_PARAM"),
            ({"kind": "carrier-pigeon"}, "M_INVALID_PARAM"),
            ({"append": "yes"}, "M_INVALID_PARAM"),
        ]
        for overrides, errcode in cases:
            ch = self.set_pusher(self.btok, **overrides)
            self.assertEqual((ch.code, ch.json_body.get("errcode")), (400, errcode), overrides)
        body = pusher_body()
        del body["lang"]
        ch = self.request("POST", "/pushers/set", self.btok, body)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (400, "M_MISSING_PARAM"))
        self.assertEqual(self.pushers(self.btok), [])

    def test_append(self) -> None:
        """Without append, setting a pushkey takes it from other users; with append both keep it."""
        self.set_pusher(self.atok)
        self.set_pusher(self.btok)
        self.assertEqual(self.pushers(self.atok), [])
        self.set_pusher(self.atok, append=True)
        self.assertEqual(len(self.pushers(self.atok)), 1)
        self.assertEqual(len(self.pushers(self.btok)), 1)

    def test_full_format_with_badge(self) -> None:
        """A message reaches the gateway in full format with tweaks, the unread badge and device data."""
        self.set_pusher(self.btok)
        self.send(self.alice, self.room, "one")
        event_id = self.send(self.alice, self.room, content={
            "msgtype": "m.text", "body": "bob?", "m.mentions": {"user_ids": [self.bob]}})
        notes = self.gateway.notifications()
        self.assertEqual(len(notes), 2)
        self.assertEqual(self.gateway.requests[0][0], URL)
        note = notes[1]
        self.assertEqual(note["event_id"], event_id)
        self.assertEqual(note["room_id"], self.room)
        self.assertEqual(note["type"], "m.room.message")
        self.assertEqual(note["sender"], self.alice)
        self.assertEqual(note["content"]["body"], "bob?")
        self.assertEqual(note["counts"], {"unread": 2})
        self.assertEqual(note["prio"], "high")
        device = note["devices"][0]
        self.assertEqual((device["app_id"], device["pushkey"]), ("org.example.app.ios", "KEY1"))
        self.assertEqual(device["data"], {"custom": 1})
        self.assertEqual(device["tweaks"], {"sound": "default", "highlight": True})
        self.assertEqual(notes[0]["counts"], {"unread": 1})
        self.assertEqual(notes[0]["prio"], "low")

    def test_event_id_only(self) -> None:
        """event_id_only sends ids and counts, never the content."""
        self.set_pusher(self.btok, data={"url": URL, "format": "event_id_only"})
        event_id = self.send(self.alice, self.room, "secret")
        note = self.gateway.notifications()[0]
        self.assertEqual(note["event_id"], event_id)
        self.assertNotIn("content", note)
        self.assertNotIn("sender", note)
        self.assertEqual(note["devices"][0]["data"], {"format": "event_id_only"})

    def test_nothing_for_non_notifying_events(self) -> None:
        """Notices, own messages and other users' pushers send nothing."""
        self.set_pusher(self.btok)
        self.send(self.alice, self.room, content={"msgtype": "m.notice", "body": "bot"})
        self.send(self.bob, self.room, "mine")
        self.assertEqual(self.gateway.requests, [])

    def test_retries_with_backoff(self) -> None:
        """A failing gateway is retried after 1, 2, 4... seconds, in order, until it answers."""
        self.set_pusher(self.btok)
        self.gateway.answers = [ConnectionRefusedError(), (500, None), (200, {})]
        first = self.send(self.alice, self.room, "one")
        second = self.send(self.alice, self.room, "two")
        self.assertEqual(len(self.gateway.requests), 1)
        self.hs.advance(1)
        self.assertEqual(len(self.gateway.requests), 2)
        self.hs.advance(1.5)
        self.assertEqual(len(self.gateway.requests), 2)
        self.hs.advance(0.5)
        ids = [n["event_id"] for n in self.gateway.notifications()]
        self.assertEqual(ids, [first, first, first, second])

    def test_gives_up_after_max_attempts(self) -> None:
        """A notification that never gets through is dropped after MAX_ATTEMPTS and the next one is sent."""
        self.set_pusher(self.btok)
        self.gateway.answers = [(503, None)] * MAX_ATTEMPTS
        first = self.send(self.alice, self.room, "one")
        second = self.send(self.alice, self.room, "two")
        for _ in range(MAX_ATTEMPTS):
            self.hs.advance(600)
        ids = [n["event_id"] for n in self.gateway.notifications()]
        self.assertEqual(ids, [first] * MAX_ATTEMPTS + [second])

    def test_rejected_pushkey_removed(self) -> None:
        """A pushkey the gateway rejects is deleted and gets nothing more."""
        self.set_pusher(self.btok)
        self.gateway.answers = [(200, {"rejected": ["KEY1"]})]
        self.send(self.alice, self.room, "one")
        self.assertEqual(self.pushers(self.btok), [])
        self.send(self.alice, self.room, "two")
        self.assertEqual(len(self.gateway.requests), 1)

    def test_deleted_with_device_and_on_deactivation(self) -> None:
        """A device's pushers go when it is deleted; a deactivated user's pushers all go."""
        self.set_pusher(self.btok)
        self.hs.run(self.hs.components.account_area.devices.delete_devices(self.bob, ["TESTDEVICE"]))
        self.assertEqual(self.hs.run(self.push.pusher_store.get_pushers(self.bob)), [])
        self.set_pusher(self.atok)
        self.hs.run(self.hs.components.account_area.account.deactivate_user(self.alice))
        self.assertEqual(self.hs.run(self.push.pusher_store.get_pushers(self.alice)), [])

    def test_pool_reloads_from_database(self) -> None:
        """A restarted pool delivers to the pushers stored before."""
        self.set_pusher(self.btok)
        self.push.pool.stop()
        self.hs.run(self.push.pool.start())
        self.send(self.alice, self.room, "after restart")
        self.assertEqual(len(self.gateway.requests), 1)


class _GatewayResource(resource.Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[Any] = []

    def render_POST(self, request: Any) -> bytes:
        self.bodies.append((request.path, json.loads(request.content.read())))
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"rejected": ["GONE"]}).encode()


class LoopbackGatewayTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_http_client_posts_json(self) -> Any:
        """The HTTP client POSTs JSON to a real loopback gateway and parses its answer."""
        gateway = _GatewayResource()
        port = reactor.listenTCP(0, server.Site(gateway), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        client = HttpPushGatewayClient(reactor, timeout=10)
        url = f"http://127.0.0.1:{port.getHost().port}/_matrix/push/v1/notify"
        code, answer = yield defer.ensureDeferred(client.post_json(url, {"notification": {"event_id": "$e"}}))
        self.assertEqual((code, answer), (200, {"rejected": ["GONE"]}))
        self.assertEqual(gateway.bodies, [(b"/_matrix/push/v1/notify", {"notification": {"event_id": "$e"}})])
