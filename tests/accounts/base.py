"""Helpers shared by the accounts tests: a test homeserver and the usual client calls."""

from __future__ import annotations

from typing import Any, ClassVar, Optional

from twisted.trial import unittest

from matrixd.testing.homeserver import TestHomeserver, make_homeserver
from matrixd.testing.http import FakeChannel
from matrixd.types import Requester

V3 = "/_matrix/client/v3"


class AccountsTestCase(unittest.TestCase):
    #: Config overrides for the test homeserver of every test in the class.
    CONFIG: ClassVar[dict[str, Any]] = {}

    def setUp(self) -> None:
        self.hs: TestHomeserver = make_homeserver(self, self.CONFIG)

    def req(self, method: str, path: str, body: Any = None, token: Optional[str] = None, **kw: Any) -> FakeChannel:
        if not path.startswith("/_"):
            path = V3 + path
        return self.hs.request(method, path, body, access_token=token, **kw)

    def assert_error(self, ch: FakeChannel, code: int, errcode: str) -> None:
        self.assertEqual((ch.code, ch.json_body.get("errcode")), (code, errcode), ch.json_body)

    def register(self, localpart: str, password: str = "pw", **extra: Any) -> dict[str, Any]:
        """Complete the m.login.dummy registration; returns the 200 body."""
        body = {"username": localpart, "password": password, **extra}
        ch = self.req("POST", "/register", body)
        self.assertEqual(ch.code, 401, ch.json_body)
        body["auth"] = {"type": "m.login.dummy", "session": ch.json_body["session"]}
        ch = self.req("POST", "/register", body)
        self.assertEqual(ch.code, 200, ch.json_body)
        result: dict[str, Any] = ch.json_body
        return result

    def login(self, user: str, password: str = "pw", **extra: Any) -> FakeChannel:
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                "password": password, **extra}
        return self.req("POST", "/login", body)

    def with_password_uia(self, method: str, path: str, body: dict[str, Any], token: str, user: str,
                          password: str = "pw") -> FakeChannel:
        """Do the UIA dance with m.login.password; returns the final response."""
        ch = self.req(method, path, body, token)
        self.assertEqual(ch.code, 401, ch.json_body)
        self.assertEqual(ch.json_body["flows"], [{"stages": ["m.login.password"]}])
        auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                "password": password, "session": ch.json_body["session"]}
        return self.req(method, path, {**body, "auth": auth}, token)

    def whoami(self, token: str) -> FakeChannel:
        return self.req("GET", "/account/whoami", token=token)

    def create_room(self, user_id: str, **body: Any) -> str:
        """Create a room through the room core (the room servlets belong to another area)."""
        room_id: str = self.hs.run(self.hs.components.core.room_creation.create_room(_requester(user_id), body))
        return room_id

    def membership(self, user_id: str, room_id: str, action: str, target: Optional[str] = None) -> None:
        self.hs.run(self.hs.components.core.membership.update_membership(
            _requester(user_id), target or user_id, room_id, action))

    def member_content(self, room_id: str, user_id: str) -> dict[str, Any]:
        """The content of the user's current m.room.member event, from the room's state."""
        core = self.hs.components.core
        event = self.hs.run(core.stores.current_state.get_current_state_event(room_id, "m.room.member", user_id))
        assert event is not None
        return dict(event.content)


def _requester(user_id: str) -> Requester:
    return Requester(user_id=user_id, device_id=None, access_token_id=None)
