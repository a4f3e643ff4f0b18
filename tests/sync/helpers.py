"""A test homeserver with shortcuts for the room actions sync tests set up."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, Optional

from twisted.trial import unittest

from matrixd.testing.homeserver import TestHomeserver, make_homeserver
from matrixd.testing.http import FakeChannel
from matrixd.types import JsonDict, Requester

DEVICE = "TESTDEVICE"


def requester(user_id: str) -> Requester:
    return Requester(user_id=user_id, device_id=DEVICE, access_token_id=None)


class SyncTestCase(unittest.TestCase):
    """Rooms and events are made through the room handlers; everything read goes through HTTP."""

    config: Optional[dict[str, Any]] = None

    def setUp(self) -> None:
        self.hs: TestHomeserver = make_homeserver(self, self.config)
        self.core = self.hs.components.core

    def user(self, localpart: str) -> tuple[str, str]:
        return self.hs.create_user(localpart)

    def create_room(self, user_id: str, **body: Any) -> str:
        room_id: str = self.hs.run(self.core.room_creation.create_room(requester(user_id), body))
        return room_id

    def send(self, user_id: str, room_id: str, body: str = "hello", *, txn_id: Optional[str] = None,
             event_type: str = "m.room.message", content: Optional[JsonDict] = None,
             state_key: Optional[str] = None) -> str:
        content = content if content is not None else {"msgtype": "m.text", "body": body}
        event_id: str = self.hs.run(self.core.send.send_event(
            requester(user_id), room_id, event_type, content, state_key=state_key, txn_id=txn_id))
        return event_id

    def membership(self, actor: str, target: str, room_id: str, action: str) -> None:
        self.hs.run(self.core.membership.update_membership(requester(actor), target, room_id, action))

    def join(self, user_id: str, room_id: str) -> None:
        self.membership(user_id, user_id, room_id, "join")

    def request(self, method: str, path: str, token: str, content: Any = None,
                await_result: bool = True) -> FakeChannel:
        return self.hs.request(method, "/_matrix/client/v3" + path, content, access_token=token,
                               await_result=await_result)

    def sync_path(self, since: Optional[str] = None, **params: Any) -> str:
        query: dict[str, str] = {}
        if since is not None:
            query["since"] = since
        for k, v in params.items():
            if isinstance(v, bool):
                query[k] = "true" if v else "false"
            elif isinstance(v, dict):
                query[k] = json.dumps(v)
            else:
                query[k] = str(v)
        return "/sync" + ("?" + urllib.parse.urlencode(query) if query else "")

    def sync(self, token: str, since: Optional[str] = None, **params: Any) -> JsonDict:
        channel = self.request("GET", self.sync_path(since, **params), token)
        self.assertEqual(channel.code, 200, channel.json_body)
        body: JsonDict = channel.json_body
        return body

    @staticmethod
    def timeline_ids(body: JsonDict, room_id: str, section: str = "join") -> list[str]:
        return [e["event_id"] for e in body["rooms"][section][room_id]["timeline"]["events"]]
