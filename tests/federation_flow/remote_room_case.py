"""A test case whose homeserver talks to one fake remote server holding rooms (``FakeRoomHost``)."""

from __future__ import annotations

import urllib.parse
from typing import Any

from twisted.trial import unittest

from matrixd.events.event import JsonDict
from tests.federation.utils import REMOTE, make_federating_homeserver
from tests.federation_flow.fake_room import FakeRoom, FakeRoomHost

CAROL = f"@carol:{REMOTE}"


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class RemoteRoomTestCase(unittest.TestCase):
    """Our server with a running sender and a local user alice; the remote records the PDUs it is sent."""

    def setUp(self) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(self)
        self.hs.run(self.hs.components.federation_out.sender.start())
        self.addCleanup(self.hs.components.federation_out.sender.stop)
        self.alice, self.alice_token = self.hs.create_user("alice")
        self.st = self.hs.components.core.stores
        self.received: list[JsonDict] = []
        self.host = FakeRoomHost(self.remote)

        async def on_send(origin: str, content: Any, request: Any, txn_id: str) -> tuple[int, JsonDict]:
            self.received.extend(content.get("pdus", []))
            return 200, {"pdus": {}}

        self.remote.handle("PUT", "/_matrix/federation/v1/send/(?P<txn_id>[^/]*)", on_send)

    def join(self, room: FakeRoom) -> Any:
        """alice joins ``room`` through the remote server."""
        return self.hs.request("POST", f"/_matrix/client/v3/join/{q(room.room_id)}?server_name={REMOTE}", {},
                               access_token=self.alice_token)
