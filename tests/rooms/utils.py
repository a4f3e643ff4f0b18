"""A client's view of the in-process homeserver for the rooms tests."""

from __future__ import annotations

import itertools
import json
import urllib.parse
from typing import Any, Optional

from twisted.trial import unittest

from matrixd.testing.homeserver import TestHomeserver, make_homeserver

_txn_ids = itertools.count(1)


def q(value: str) -> str:
    """Percent-encode a path segment (ids contain '!', '#', ':', '$')."""
    return urllib.parse.quote(value, safe="")


_RELAXED = {"per_second": 10000, "burst_count": 10000}
#: The test homeserver relaxes most limits; these too, so tests can join and invite freely.
RELAXED_ROOM_LIMITS: dict[str, Any] = {
    "rc_joins_per_room": _RELAXED,
    "rc_invites": {"per_room": _RELAXED, "per_user": _RELAXED, "per_issuer": _RELAXED},
}


class RoomsTestCase(unittest.TestCase):
    """Users alice, bob, carol on one server; helpers return parsed JSON and check the status."""

    config: Optional[dict[str, Any]] = RELAXED_ROOM_LIMITS

    def setUp(self) -> None:
        self.hs: TestHomeserver = make_homeserver(self, self.config)
        self.alice, self.alice_tok = self.hs.create_user("alice")
        self.bob, self.bob_tok = self.hs.create_user("bob")
        self.carol, self.carol_tok = self.hs.create_user("carol")

    def req(self, method: str, path: str, body: Any = None, tok: Optional[str] = None, expect: int = 200,
            errcode: Optional[str] = None) -> Any:
        channel = self.hs.request(method, "/_matrix/client/v3" + path, body, access_token=tok)
        self.assertEqual(channel.code, expect, f"{method} {path}: {channel.code} {channel.json_body}")
        if errcode is not None:
            self.assertEqual(channel.json_body.get("errcode"), errcode, channel.json_body)
        return channel.json_body

    def create_room(self, tok: str, **body: Any) -> str:
        return str(self.req("POST", "/createRoom", body, tok)["room_id"])

    def send(self, room_id: str, tok: str, body: str = "hi", event_type: str = "m.room.message",
             content: Optional[dict[str, Any]] = None) -> str:
        txn = next(_txn_ids)
        payload = content if content is not None else {"msgtype": "m.text", "body": body}
        return str(self.req("PUT", f"/rooms/{q(room_id)}/send/{event_type}/t{txn}", payload, tok)["event_id"])

    def set_state(self, room_id: str, tok: str, event_type: str, content: dict[str, Any], state_key: str = "",
                  expect: int = 200) -> Any:
        return self.req("PUT", f"/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}", content, tok, expect)

    def join(self, room_id: str, tok: str, expect: int = 200) -> Any:
        return self.req("POST", f"/rooms/{q(room_id)}/join", {}, tok, expect)

    def leave(self, room_id: str, tok: str) -> Any:
        return self.req("POST", f"/rooms/{q(room_id)}/leave", {}, tok)

    def invite(self, room_id: str, tok: str, user_id: str) -> Any:
        return self.req("POST", f"/rooms/{q(room_id)}/invite", {"user_id": user_id}, tok)

    def messages(self, room_id: str, tok: str, expect: int = 200, **params: Any) -> Any:
        query = urllib.parse.urlencode(
            {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
        )
        return self.req("GET", f"/rooms/{q(room_id)}/messages?{query}", None, tok, expect)

    @staticmethod
    def bodies(events: list[dict[str, Any]]) -> list[str]:
        return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]
